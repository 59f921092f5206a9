"""`dyadgen prepare-raw`: raw side-by-side videos with a stereo track -> SocioEmoDialog's layout
exactly as its own tools write it (dyadgen.data.layout), so their tools and ours can be mixed.

For each ``<raw>/<name>.mp4`` (left actor in the left half and the left channel) it writes
``<out>/<name>.mp4`` (a copy) beside ``<out>/<name>/``: channel wavs at the source rate, per-channel
diarization logs (speaker 0 = the channel's own actor, numbered per channel), `_mute` wavs,
``wav_{left,right}_segments/``, per-side ASR json and ``video_segments/`` (one clip per left-log line).

Turns come from ``<raw>/<name>_{left,right}_speaker_diarization_asr.json`` when present (the published
ASR format), else from energy-based voice activity on each channel (no ASR text then). Unlike their
processing (stream copy, so clips start on keyframes) clips are decoded and re-encoded, so a clip
starts on its turn's first frame; the reader places both kinds by their own timestamps. Each video
folder is written under a temporary name and renamed when complete: a killed run resumes by skipping
finished folders.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dyadgen.clock import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from dyadgen.data.layout import SIDES, SpokenTurn, parse_time, write_video_folder
from dyadgen.errors import UserError
from dyadgen.io.audio import read_stereo, resample
from dyadgen.io.video import VideoWriter
from dyadgen.media.clips import decode_frames, grid_frames


@dataclass
class RawTurn:
    side: str
    start: int  # sample at 16 kHz, on a frame boundary
    end: int
    text: str = ""


def _frame_rms(track: np.ndarray, T: int) -> np.ndarray:
    return np.sqrt((track[: T * SAMPLES_PER_FRAME].reshape(T, SAMPLES_PER_FRAME).astype(np.float64) ** 2).mean(-1))


def voice_activity(track: np.ndarray, partner: np.ndarray | None = None, *, threshold_db: float = -30.0,
                   bleed_db: float = -12.0, min_speech: float = 0.3, min_gap: float = 0.4) -> list[tuple[int, int]]:
    """Speech spans (start, end) in samples of a 16 kHz track, on 25 Hz frame boundaries: frames whose
    RMS is within ``threshold_db`` of the track's loud frames and, when the partner's channel is given,
    not more than ``bleed_db`` below it (a microphone also hears the partner, more quietly); gaps
    shorter than ``min_gap`` s are bridged, spans shorter than ``min_speech`` s dropped."""
    T = len(track) // SAMPLES_PER_FRAME
    if T == 0:
        return []
    rms = _frame_rms(track, T)  # [T]
    loud = np.quantile(rms, 0.95)
    if loud <= 1e-6:
        return []
    active = 20 * np.log10(np.maximum(rms, 1e-12) / loud) > threshold_db  # [T]
    if partner is not None:
        other = _frame_rms(np.pad(partner, (0, max(0, T * SAMPLES_PER_FRAME - len(partner)))), T)
        active &= 20 * np.log10(np.maximum(rms, 1e-12) / np.maximum(other, 1e-12)) > bleed_db
    spans: list[tuple[int, int]] = []
    start = None
    for t, a in enumerate(np.append(active, False)):
        if a and start is None:
            start = t
        elif not a and start is not None:
            if spans and start - spans[-1][1] < min_gap * FPS:
                spans[-1] = (spans[-1][0], t)
            else:
                spans.append((start, t))
            start = None
    return [(s * SAMPLES_PER_FRAME, e * SAMPLES_PER_FRAME) for s, e in spans if e - s >= min_speech * FPS]


def read_asr_turns(path: Path, side: str) -> list[RawTurn]:
    """Turns of one side from a published-format ASR json (idx, start, end, asr, asr_flag)."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return [RawTurn(side, round(parse_time(e["start"]) * FPS) * SAMPLES_PER_FRAME,
                        round(parse_time(e["end"]) * FPS) * SAMPLES_PER_FRAME, e.get("asr", "")) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a readable ASR json ({err})") from err


def find_turns(raw: Path, audio: np.ndarray) -> tuple[list[RawTurn], str]:
    """Both sides' turns sorted by start, and where they came from ("asr" or "vad")."""
    jsons = {side: raw.with_name(f"{raw.stem}_{side}_speaker_diarization_asr.json") for side in SIDES}
    if all(p.is_file() for p in jsons.values()):
        turns = [t for side in SIDES for t in read_asr_turns(jsons[side], side)]
        source = "asr"
    else:
        turns = [RawTurn(side, s, e) for p, side in enumerate(SIDES)
                 for s, e in voice_activity(audio[p], audio[1 - p])]
        source = "vad"
    n = audio.shape[1]
    turns = [RawTurn(t.side, t.start, min(t.end, n), t.text) for t in turns if t.start < min(t.end, n)]
    return sorted(turns, key=lambda t: (t.start, t.side)), source


def exact_cutter(audio: np.ndarray):
    """Frame-accurate clips of a raw video with its 16 kHz stereo track ``audio`` [2,N]: the frames of
    ``[start, end)`` on the 25 fps grid (random access, so a clip never decodes the whole video),
    re-encoded, so a clip's first frame is its turn's first frame."""

    def cut(raw: Path, dst: Path, start: float, end: float) -> None:
        first, stop = grid_frames(start, end)
        frames = decode_frames(raw, start=first / FPS, num_frames=stop - first)  # [T,H,W,3]
        piece = audio[:, first * SAMPLES_PER_FRAME: (first + len(frames)) * SAMPLES_PER_FRAME]  # [2,T*640]
        with VideoWriter(dst, width=frames.shape[2], height=frames.shape[1], audio=piece) as writer:
            writer.write(frames)

    return cut


def prepare_video(raw: Path, out: Path) -> tuple[str, int]:
    """Write one video's copy and folder; returns (turn source, number of turns)."""
    native, rate = read_stereo(raw)  # [2,N'] at the source rate, for the wavs
    audio = resample(native, rate, SAMPLE_RATE)  # [2,N] at 16 kHz, for voice activity and the clips
    turns, source = find_turns(raw, audio)
    copy = out / raw.name
    tmp = out / f".{raw.stem}.tmp{raw.suffix}"
    shutil.copyfile(raw, tmp)
    os.replace(tmp, copy)
    spoken = [SpokenTurn(t.side, t.start / SAMPLE_RATE, t.end / SAMPLE_RATE, t.text) for t in turns]
    write_video_folder(out, copy, native, rate, spoken, exact_cutter(audio))
    return source, len(turns)


def prepare_raw(raw_dir: str | os.PathLike, out: str | os.PathLike, *, progress: bool = True) -> dict:
    """Every ``*.mp4`` of ``raw_dir`` into ``out``; returns counts and the skipped files with reasons."""
    raw_dir, out = Path(raw_dir), Path(out)
    if not raw_dir.is_dir():
        raise UserError(f"{raw_dir}: not a folder of raw videos")
    videos = sorted(p for p in raw_dir.glob("*.mp4") if not p.name.startswith("."))
    if not videos:
        raise UserError(f"{raw_dir}: no .mp4 files")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"videos": 0, "turns": 0, "resumed": 0, "asr": 0, "vad": 0, "skipped": []}
    for raw in tqdm(videos, desc="prepare-raw", disable=not progress):
        if (out / raw.stem).is_dir():
            summary["resumed"] += 1
            continue
        try:
            source, turns = prepare_video(raw, out)
        except (UserError, OSError, ValueError) as err:  # a bad video is skipped and counted, never fatal
            shutil.rmtree(out / f".{raw.stem}.tmp", ignore_errors=True)
            (out / f".{raw.stem}.tmp{raw.suffix}").unlink(missing_ok=True)
            summary["skipped"].append((str(raw), str(err)))
            continue
        summary["videos"] += 1
        summary["turns"] += turns
        summary[source] += 1
    return summary
