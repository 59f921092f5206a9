"""Voices for the synthetic corpus: espeak-ng Mandarin when installed, a speech-like fallback otherwise,
and real human recordings (folders of one speaker's files, or the speech that Debian packages ship:
``PACKAGED``) for the people given one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from dyadgen.clock import SAMPLE_RATE
from dyadgen.errors import UserError
from dyadgen.io.audio import read_audio, resample

# short everyday Mandarin sentences; utterances are drawn from these
PHRASES: tuple[str, ...] = (
    "你好，好久不见了。", "今天天气真不错。", "你最近工作怎么样？", "我觉得这个主意很好。",
    "真的吗？我不太相信。", "我们周末去爬山吧。", "这部电影太感人了。", "我有点担心明天的考试。",
    "谢谢你一直帮助我。", "这件事让我很生气。", "我们一起去吃饭吧。", "你说得很有道理。",
    "我昨天看到一只小猫。", "科技发展得越来越快了。", "比赛的结果出乎意料。", "别担心，一切都会好的。",
    "我很想念我的家人。", "这个问题有点复杂。", "听起来很有意思。", "我们下次再聊吧。",
)


AUDIO_SUFFIXES = (".wav", ".ogg", ".flac", ".mp3")
LONG_SECONDS = 8.0  # a recording longer than this is cut into utterances; a shorter one is one utterance
SYLLABLE_SECONDS = 0.6  # files this short (median) are single syllables: an utterance strings several


@dataclass(frozen=True)
class Recorded:
    """One real speaker: their recordings, each file one voice."""

    name: str
    files: tuple[Path, ...]
    syllables: bool = False  # each file is one syllable (an utterance strings 3-9 of them together)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> Recorded:
        """Every audio file under ``folder`` (recursively) as one speaker; one-line error if there is none."""
        root = Path(folder)
        if not root.is_dir():
            raise UserError(f"{root}: not a folder of recordings")
        files = tuple(sorted(f for f in root.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES))
        if not files:
            raise UserError(f"{root}: holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
        seconds = [len(_recording(f)) / SAMPLE_RATE for f in files[:: max(1, len(files) // 20)]]
        return cls(root.name, files, syllables=float(np.median(seconds)) < SYLLABLE_SECONDS)


@dataclass(frozen=True)
class PackagedSpeaker:
    """A speaker whose recordings ship inside a Debian package (apt-get install PACKAGE)."""

    package: str
    licence: str
    name: str
    folder: str
    pattern: str  # glob under folder
    syllables: bool = False
    held_out: bool = False  # kept out of training corpora: the real-speech check listens to these

    def recorded(self) -> Recorded | None:
        files = tuple(sorted(Path(self.folder).glob(self.pattern)))
        return Recorded(self.name, files, self.syllables) if files else None


_CODEC2 = "/usr/share/codec2/wav"
PACKAGED: tuple[PackagedSpeaker, ...] = (
    PackagedSpeaker("asterisk-core-sounds-en-wav", "CC-BY-SA-3.0 (Allison Smith)", "allison",
                    "/usr/share/asterisk/sounds/en_US_f_Allison", "**/*.wav"),
    PackagedSpeaker("gcin-voice", "GPL-3 or LGPL-3 (Edward Der-Hua Liu)", "gcin-3", "/usr/share/gcin-voice/ogg",
                    "*/3.ogg", syllables=True),
    PackagedSpeaker("gcin-voice", "CC-BY-3.0 (ChionMeilin, voice of Chu Lo)", "gcin-5", "/usr/share/gcin-voice/ogg",
                    "*/5.ogg", syllables=True),
    PackagedSpeaker("codec2-examples", "LGPL-2.1 (David Rowe)", "codec2-ve9qrp", _CODEC2, "ve9qrp.wav"),
    PackagedSpeaker("codec2-examples", "LGPL-2.1 (David Rowe)", "codec2-vk5qi", _CODEC2, "vk5qi.wav"),
    PackagedSpeaker("codec2-examples", "LGPL-2.1 (David Rowe)", "codec2-male", _CODEC2, "[hm]*[a-z0-9].wav"),
    PackagedSpeaker("codec2-examples", "LGPL-2.1 (David Rowe)", "codec2-female", _CODEC2, "f*.wav"),
    PackagedSpeaker("codec2-examples", "LGPL-2.1 (David Rowe)", "codec2-david", _CODEC2, "david4.wav", held_out=True),
    PackagedSpeaker("pocketsphinx-testdata", "BSD-2-Clause (Carnegie Mellon University; LibriVox reading)",
                    "librivox", "/usr/share/pocketsphinx/test/data/librivox", "*.wav", held_out=True),
)


def packaged_voices(*, held_out: bool = False) -> list[Recorded]:
    """The installed packaged speakers: the training ones (default) or the held-out ones."""
    found = [s.recorded() for s in PACKAGED if s.held_out == held_out]
    return [r for r in found if r is not None]


@dataclass
class Voice:
    pitch: int  # espeak-ng -p, 0..99
    speed: int  # espeak-ng -s, words per minute
    base_hz: float  # fallback voice fundamental
    recorded: Recorded | None = None  # a real speaker: their recordings instead of a synthetic voice

    @classmethod
    def random(cls, rng: np.random.Generator) -> Voice:
        return cls(pitch=int(rng.integers(20, 80)), speed=int(rng.integers(140, 190)),
                   base_hz=float(rng.uniform(100, 230)))


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: Voice, rng: np.random.Generator, use_espeak: bool | None = None) -> np.ndarray:
    """Speech for ``text`` as float32 [N] at 16 kHz, trimmed of leading/trailing silence (a recorded
    voice says something of its own, not ``text``)."""
    if voice.recorded is not None:
        return _trim(_recorded(voice.recorded, rng))
    if use_espeak is None:
        use_espeak = have_espeak()
    audio = _espeak(text, voice) if use_espeak else _fallback(len(text), voice, rng)
    return _trim(audio)


def _espeak(text: str, voice: Voice) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "u.wav"
        subprocess.run(["espeak-ng", "-v", "cmn", "-p", str(voice.pitch), "-s", str(voice.speed), "-w", str(out),
                        text], check=True, capture_output=True)
        data, sr = sf.read(str(out), dtype="float32")
    return resample(data, sr, SAMPLE_RATE) * 0.9


@lru_cache(maxsize=64)
def _recording(path: Path) -> np.ndarray:
    data, sr = read_audio(path)
    return resample(data.mean(0), sr, SAMPLE_RATE).astype(np.float32)  # [N] at 16 kHz


def _level(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Peak-normalised to 0.5-0.9 of full scale (recordings come at very different levels)."""
    return (audio * rng.uniform(0.5, 0.9) / (np.abs(audio).max() + 1e-9)).astype(np.float32)


def _recorded(speaker: Recorded, rng: np.random.Generator) -> np.ndarray:
    """One utterance of a real speaker: 1-3 short files, a 1.5-4.5 s stretch of a long one cut where it
    is quiet, or 3-9 syllables strung together with short gaps."""
    if speaker.syllables:
        pieces = []
        for _ in range(int(rng.integers(3, 10))):
            pieces.append(_trim(_recording(speaker.files[int(rng.integers(len(speaker.files)))]), 0.02))
            pause = 0.3 if rng.random() < 0.15 else rng.uniform(0.0, 0.08)
            pieces.append(np.zeros(int(pause * SAMPLE_RATE), np.float32))
        return _level(np.concatenate(pieces[:-1]), rng)
    audio = _recording(speaker.files[int(rng.integers(len(speaker.files)))])
    if len(audio) <= LONG_SECONDS * SAMPLE_RATE:  # short prompts: 1-3 of them, as one turn
        pieces = [_trim(audio)]
        for _ in range(int(rng.integers(0, 3))):
            pieces.append(np.zeros(int(rng.uniform(0.15, 0.4) * SAMPLE_RATE), np.float32))
            pieces.append(_trim(_recording(speaker.files[int(rng.integers(len(speaker.files)))])))
        return _level(np.concatenate(pieces), rng)
    hop = SAMPLE_RATE // 50  # 20 ms frames
    energy = np.sqrt(np.convolve(audio**2, np.ones(hop) / hop, mode="valid")[::hop])  # [n/hop]
    quiet = np.flatnonzero(energy < 0.1 * np.quantile(energy, 0.9)) * hop  # sample indices of pauses
    start = int(rng.integers(0, len(audio) - int(4.5 * SAMPLE_RATE)))
    length = int(rng.uniform(1.5, 4.5) * SAMPLE_RATE)
    later = quiet[(quiet > start + length) & (quiet < start + length + SAMPLE_RATE)]
    end = int(later[0]) if later.size else start + length
    before = quiet[(quiet <= start) & (quiet > start - SAMPLE_RATE)]
    start = int(before[-1]) if before.size else start
    return _level(audio[start:end], rng)


def _fallback(num_syllables: int, voice: Voice, rng: np.random.Generator) -> np.ndarray:
    """Harmonic syllables with vowel-like formants and an energy envelope: speech-like, not speech."""
    pieces = []
    for _ in range(num_syllables):
        n = int(SAMPLE_RATE * rng.uniform(0.14, 0.24))
        t = np.arange(n) / SAMPLE_RATE
        f0 = voice.base_hz * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(1, 4) * t + rng.uniform(0, 6)))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        formants = rng.uniform([300, 900, 2300], [900, 2200, 3200])
        wave = sum(np.sin(k * phase) * np.exp(-((k * f0 - formants[:, None]) ** 2).min(0) / 2e5) / k
                   for k in range(1, 25))
        envelope = np.clip(np.sin(np.pi * t / t[-1]), 0, 1) ** 0.7
        pieces.append(wave * envelope)
        pieces.append(np.zeros(int(SAMPLE_RATE * rng.uniform(0.01, 0.05))))
    audio = np.concatenate(pieces)
    return (0.5 * audio / (np.abs(audio).max() + 1e-9)).astype(np.float32)


def _trim(audio: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    return audio[loud[0]: loud[-1] + 1].astype(np.float32) if loud.size else audio.astype(np.float32)
