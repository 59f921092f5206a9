"""Voices for the synthetic corpus: espeak-ng Mandarin when installed, a speech-like fallback otherwise."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dyadgen.clock import SAMPLE_RATE

# short everyday Mandarin sentences; utterances are drawn from these
PHRASES: tuple[str, ...] = (
    "你好，好久不见了。", "今天天气真不错。", "你最近工作怎么样？", "我觉得这个主意很好。",
    "真的吗？我不太相信。", "我们周末去爬山吧。", "这部电影太感人了。", "我有点担心明天的考试。",
    "谢谢你一直帮助我。", "这件事让我很生气。", "我们一起去吃饭吧。", "你说得很有道理。",
    "我昨天看到一只小猫。", "科技发展得越来越快了。", "比赛的结果出乎意料。", "别担心，一切都会好的。",
    "我很想念我的家人。", "这个问题有点复杂。", "听起来很有意思。", "我们下次再聊吧。",
)


@dataclass
class Voice:
    pitch: int  # espeak-ng -p, 0..99
    speed: int  # espeak-ng -s, words per minute
    base_hz: float  # fallback voice fundamental

    @classmethod
    def random(cls, rng: np.random.Generator) -> Voice:
        return cls(pitch=int(rng.integers(20, 80)), speed=int(rng.integers(140, 190)),
                   base_hz=float(rng.uniform(100, 230)))


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: Voice, rng: np.random.Generator, use_espeak: bool | None = None) -> np.ndarray:
    """Speech for ``text`` as float32 [N] at 16 kHz, trimmed of leading/trailing silence."""
    if use_espeak is None:
        use_espeak = have_espeak()
    audio = _espeak(text, voice) if use_espeak else _fallback(len(text), voice, rng)
    return _trim(audio)


def _espeak(text: str, voice: Voice) -> np.ndarray:
    import soundfile as sf

    from dyadgen.io.audio import resample

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "u.wav"
        subprocess.run(["espeak-ng", "-v", "cmn", "-p", str(voice.pitch), "-s", str(voice.speed), "-w", str(out),
                        text], check=True, capture_output=True)
        data, sr = sf.read(str(out), dtype="float32")
    return resample(data, sr, SAMPLE_RATE) * 0.9


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
