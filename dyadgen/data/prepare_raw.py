"""`dyadgen prepare-raw`: raw side-by-side videos with a stereo track -> SocioEmoDialog's processed layout.

For each ``<raw>/<name>.mp4`` (left actor in the left half and the left channel):

    <out>/<name>/<name>.mp4                               the raw video, copied
    <out>/<name>/<name>_{left,right}.wav                  each channel at 16 kHz
    <out>/<name>/<name>_{left,right}_mute.wav             the channel with the partner's solo turns silenced
    <out>/<name>/<name>_{left,right}_speaker_diarization_asr.json
    <out>/<name>/<name>_left_speaker_diarization.log
    <out>/<name>/video_segments/000000.mp4 ...            turn clips, cut frame-accurately at 25 fps
    <out>/<name>/wav_{left,right}_segments/000000.wav ...

Turns come from ``<raw>/<name>_{left,right}_speaker_diarization_asr.json`` when present (the published
ASR format), else from energy-based voice activity on each channel. Unlike the published processing
(stream copy, so clips start on keyframes) clips are decoded and re-encoded, so a clip starts exactly
on its turn's first frame. Each video folder is written to a temporary name and renamed when complete:
a killed run resumes by skipping finished folders.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dyadgen.clock import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from dyadgen.data.socioemodialog import parse_time, timestamp
from dyadgen.errors import UserError

SIDES = ("left", "right")


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


def mute_partner(audio: np.ndarray, turns: list[RawTurn]) -> np.ndarray:
    """[P,N] -> [P,N] with each channel silenced where only the partner speaks (the `_mute` wavs)."""
    own = np.zeros(audio.shape, bool)
    for t in turns:
        own[SIDES.index(t.side), t.start: t.end] = True
    muted = audio.copy()
    for p in range(2):
        muted[p, own[1 - p] & ~own[p]] = 0.0
    return muted


def prepare_video(raw: Path, out: Path) -> tuple[str, int]:
    """Write one video's folder; returns (turn source, number of turns). A finished folder is kept."""
    from dyadgen.data.clips import decode_frames
    from dyadgen.io.audio import load_stereo, write_wav
    from dyadgen.io.video import VideoWriter, probe_video

    name = raw.stem
    folder, tmp = out / name, out / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    audio = load_stereo(raw)  # [2,N] at 16 kHz
    info = probe_video(raw)
    turns, source = find_turns(raw, audio)
    for sub in ("video_segments", "wav_left_segments", "wav_right_segments"):
        (tmp / sub).mkdir(parents=True)
    shutil.copyfile(raw, tmp / raw.name)
    muted = mute_partner(audio, turns)
    for p, side in enumerate(SIDES):
        write_wav(tmp / f"{name}_{side}.wav", audio[p])
        write_wav(tmp / f"{name}_{side}_mute.wav", muted[p])
    asr: dict[str, list] = {side: [] for side in SIDES}
    log = []
    for i, turn in enumerate(turns):
        clip = f"{i:06d}"
        frames = decode_frames(raw, start=turn.start / SAMPLE_RATE,
                               num_frames=(turn.end - turn.start) // SAMPLES_PER_FRAME)  # [T,H,W,3]
        s0, s1 = turn.start, turn.start + len(frames) * SAMPLES_PER_FRAME
        with VideoWriter(tmp / "video_segments" / f"{clip}.mp4", width=info.width, height=info.height,
                         audio=audio[:, s0:s1]) as writer:
            writer.write(frames)
        for p, side in enumerate(SIDES):
            write_wav(tmp / f"wav_{side}_segments" / f"{clip}.wav", audio[p, s0:s1])
        asr[turn.side].append({"idx": i, "start": timestamp(s0), "end": timestamp(s1), "asr": turn.text,
                               "asr_flag": bool(turn.text)})
        log.append(f"{timestamp(s0)} - {timestamp(s1)} speaker {SIDES.index(turn.side)}; [Saved as {clip}.wav]")
    (tmp / f"{name}_left_speaker_diarization.log").write_text("\n".join(log) + "\n")
    for side in SIDES:
        (tmp / f"{name}_{side}_speaker_diarization_asr.json").write_text(json.dumps(asr[side], ensure_ascii=False))
    os.replace(tmp, folder)
    return source, len(turns)


def prepare_raw(raw_dir: str | os.PathLike, out: str | os.PathLike, *, progress: bool = True) -> dict:
    """Every ``*.mp4`` of ``raw_dir`` into ``out``; returns counts and the skipped files with reasons."""
    from tqdm.auto import tqdm

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
            summary["skipped"].append((str(raw), str(err)))
            continue
        summary["videos"] += 1
        summary["turns"] += turns
        summary[source] += 1
    return summary
