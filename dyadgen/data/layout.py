"""SocioEmoDialog's processed layout exactly as its own tools write it (data_tools/ of
KwaiVGI/SocioEmoDialog; DATASETS.md): the time format, the per-channel diarization logs, the ASR
json schema, and one writer of a whole video folder that `dyadgen synth` and `dyadgen prepare-raw`
share, so data prepared by their tools and by ours can be mixed.

    videos/<v>.mp4                                  the raw side-by-side recording, BESIDE its folder
    videos/<v>/<v>_{left,right}.wav                 one channel each, mono 16-bit PCM at the source rate
    videos/<v>/<v>_{left,right}_speaker_diarization.log
    videos/<v>/<v>_{left,right}_mute.wav            the channel with its speaker-1 segments zeroed
    videos/<v>/wav_{left,right}_segments/K.wav      the K-th "speaker 0" line of that side's log only
    videos/<v>/video_segments/N.mp4                 the N-th segment line of the LEFT log, either speaker
    videos/<v>/<v>_{left,right}_speaker_diarization_asr.json   idx K = the K-th "speaker 0" line
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dyadgen.io.audio import write_wav
from dyadgen.io.files import replace_folder, write_text_atomic

SIDES = ("left", "right")
_LINE = re.compile(r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})\s*-\s*(\d{2}):(\d{2}):(\d{2})\.(\d{3})\s*speaker\s+(\d+)\s*;"
                   r"\s*(?:\[Saved as (\d+)\.wav\])?")


@dataclass(frozen=True)
class Segment:
    """One segment line of a diarization log."""

    start: float  # seconds, as written (milliseconds truncated)
    end: float
    speaker: int  # 0 = the channel's own actor (the loudest); 1, 2, ... = others (the partner's bleed)
    saved_as: int | None = None  # K of wav_<side>_segments/K.wav, speaker-0 lines only


def hhmmss(seconds: float) -> str:
    """Seconds -> HH:MM:SS.mmm with the milliseconds truncated, exactly as their sec_to_hhmmss does."""
    h, m, s = int(seconds // 3600), int((seconds % 3600) // 60), int(seconds % 60)
    ms = int((seconds - int(seconds)) * 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def parse_time(text: str) -> float:
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def parse_log(path: Path) -> list[Segment]:
    """The segment lines of a diarization log in file order (the header block is skipped)."""
    segments = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LINE.match(line.strip())
        if match:
            g = match.groups()
            start = int(g[0]) * 3600 + int(g[1]) * 60 + int(g[2]) + int(g[3]) / 1000
            end = int(g[4]) * 3600 + int(g[5]) * 60 + int(g[6]) + int(g[7]) / 1000
            segments.append(Segment(start, end, int(g[8]), int(g[9]) if g[9] is not None else None))
    return segments


def format_log(segments: list[Segment], energies: dict[int, float]) -> str:
    """Their log text: the "Speaker Energies:" block, a blank line, "Segment Information:", then one
    line per segment with "[Saved as K.wav]" on speaker-0 lines only."""
    lines = ["Speaker Energies:"]
    lines += [f"Original: SPEAKER_{spk:02d}, Mapped: speaker {spk}, Energy: {energy:.4f}"
              for spk, energy in sorted(energies.items())]
    lines.append("\nSegment Information:")
    for seg in segments:
        line = f"{hhmmss(seg.start)} - {hhmmss(seg.end)} speaker {seg.speaker};"
        if seg.saved_as is not None:
            line += f" [Saved as {seg.saved_as:06d}.wav]"
        lines.append(line)
    return "\n".join(lines) + "\n"


_OTHER_LANGUAGE = re.compile(r"[^A-Za-z\u4e00-\u9fff0-9\uff10-\uff19\s" + re.escape(
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~、。？！，；：“”‘’（）【】—…《》﹗﹖﹔﹐﹑﹚") + "]")


def asr_flag(text: str) -> bool:
    """Their asr_result_check: false for Whisper's known hallucinations, text shorter than 2
    characters, or characters of another language."""
    if ("点赞" in text and "订阅" in text) or "中文普通话" in text or len(text) < 2:
        return False
    return not _OTHER_LANGUAGE.search(text)


@dataclass
class SpokenTurn:
    """One person's own turn, as a writer gets it."""

    side: str
    start: float  # seconds
    end: float
    text: str = ""


def channel_segments(turns: list[SpokenTurn], side: str) -> list[Segment]:
    """One channel's log lines: its own turns as speaker 0 (numbered in order), the partner's as
    speaker 1, sorted by start."""
    lines = sorted((t.start, t.end, 0 if t.side == side else 1) for t in turns)
    segments, saved = [], 0
    for start, end, speaker in lines:
        segments.append(Segment(start, end, speaker, saved if speaker == 0 else None))
        saved += speaker == 0
    return segments


Cutter = Callable[[Path, Path, float, float], object]  # (raw video, clip path, start s, end s)


def write_video_folder(root: Path, raw: Path, audio: np.ndarray, sample_rate: int, turns: list[SpokenTurn],
                       cut: Cutter, extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``<root>/<name>/`` for the raw video ``<root>/<name>.mp4`` (already in place) from its
    stereo track float32 [2,N] at the source rate and both people's own turns; ``extra`` may add
    files. The folder is built under a hidden name and renamed when complete, so a finished folder
    is never half-written."""
    name = raw.stem
    folder, tmp = root / name, root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("video_segments", "wav_left_segments", "wav_right_segments"):
        (tmp / sub).mkdir(parents=True)
    texts = {(t.side, t.start): t.text for t in turns}
    logs = {}
    for p, side in enumerate(SIDES):
        segments = channel_segments(turns, side)
        logs[side] = segments
        channel = audio[p]
        muted = channel.copy()
        energies: dict[int, list[float]] = {}
        asr = []
        for seg in segments:
            a, b = int(seg.start * sample_rate), int(seg.end * sample_rate)
            piece = channel[a:b]
            energies.setdefault(seg.speaker, []).append(float(np.sqrt(np.mean(piece**2))) if len(piece) else 0.0)
            if seg.speaker != 0:
                muted[a:b] = 0.0  # their _mute wav: the channel with every non-own segment zeroed
                continue
            write_wav(tmp / f"wav_{side}_segments" / f"{seg.saved_as:06d}.wav", piece, sample_rate)
            text = texts.get((side, seg.start), "")
            asr.append({"idx": seg.saved_as, "start": hhmmss(seg.start), "end": hhmmss(seg.end), "asr": text,
                        "asr_flag": asr_flag(text)})
        write_wav(tmp / f"{name}_{side}.wav", channel, sample_rate)
        write_wav(tmp / f"{name}_{side}_mute.wav", muted, sample_rate)
        mean_energy = {spk: float(np.mean(e)) for spk, e in energies.items()}
        write_text_atomic(tmp / f"{name}_{side}_speaker_diarization.log", format_log(segments, mean_energy))
        write_text_atomic(tmp / f"{name}_{side}_speaker_diarization_asr.json",
                          json.dumps(asr, ensure_ascii=False, indent=2))
    for n, seg in enumerate(logs["left"]):  # clip N = the N-th line of the LEFT log, either speaker
        cut(raw, tmp / "video_segments" / f"{n:06d}.mp4", parse_time(hhmmss(seg.start)), parse_time(hhmmss(seg.end)))
    if extra is not None:
        extra(tmp)
    return replace_folder(tmp, folder)
