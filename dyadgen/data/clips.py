"""Decode a time range of a side-by-side video at 25 fps, split it into the two people, crop them by
the shared crop rule, and pair it with 16 kHz audio per person.

decord does random-access decoding where it is installed; PyAV decodes elsewhere. Whatever the
source frame rate, output frame k is the source frame showing time start + k / 25.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dyadgen.clock import FPS, SAMPLES_PER_FRAME, frames_for_samples
from dyadgen.data.crop import Box, clip_box, crop_to_framing
from dyadgen.errors import UserError
from dyadgen.io.audio import load_audio


class ClipError(UserError):
    """A clip that cannot be used (corrupt, misaligned): skipped and counted in long jobs."""


@dataclass
class Turn:
    frames: np.ndarray  # uint8 [P,T,3,H,W]
    audio: np.ndarray  # float32 [P,N], N = T * 640
    boxes: list[Box | None]  # the face box each person was framed by (None: centre crop)


def decode_frames(path: str | os.PathLike, start: float = 0.0, num_frames: int | None = None,
                  fps: int = FPS) -> np.ndarray:
    """uint8 [T,H,W,3] at ``fps`` from ``start`` seconds (all remaining frames when num_frames is None)."""
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"{path}: file not found")
    try:
        return _decode_decord(path, start, num_frames, fps)
    except ImportError:
        return _decode_av(path, start, num_frames, fps)
    except ClipError:
        raise
    except Exception as err:
        raise ClipError(f"{path}: cannot decode ({type(err).__name__}: {str(err)[:80]})") from None


def _source_indices(src_fps: float, src_count: int, start: float, num_frames: int | None, fps: int) -> np.ndarray:
    duration = src_count / src_fps
    available = int(np.floor((duration - start) * fps + 1e-6))
    n = available if num_frames is None else min(num_frames, available)
    times = start + np.arange(max(n, 0)) / fps
    return np.minimum(np.floor(times * src_fps + 1e-3).astype(np.int64), src_count - 1)


def _decode_decord(path: Path, start: float, num_frames: int | None, fps: int) -> np.ndarray:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    idx = _source_indices(reader.get_avg_fps(), len(reader), start, num_frames, fps)
    if idx.size == 0:
        return np.zeros((0, *reader[0].shape), np.uint8)
    return reader.get_batch(list(idx)).asnumpy()


def _decode_av(path: Path, start: float, num_frames: int | None, fps: int) -> np.ndarray:
    import av

    try:
        with av.open(str(path)) as box:
            stream = box.streams.video[0]
            src_fps = float(stream.average_rate)
            frames = [f.to_ndarray(format="rgb24") for f in box.decode(stream)]
    except Exception as err:
        raise ClipError(f"{path}: cannot decode ({type(err).__name__})") from None
    if not frames:
        raise ClipError(f"{path}: no video frames")
    idx = _source_indices(src_fps, len(frames), start, num_frames, fps)
    return np.stack([frames[i] for i in idx]) if idx.size else np.zeros((0, *frames[0].shape), np.uint8)


def split_people(frames: np.ndarray) -> list[np.ndarray]:
    """Side-by-side frames uint8 [T,H,W,3] -> [left [T,H,W/2,3], right [T,H,W/2,3]]."""
    half = frames.shape[2] // 2
    return [frames[:, :, :half], frames[:, :, half: 2 * half]]


def crop_people(frames: np.ndarray, size: tuple[int, int],
                boxes: list[Box | None] | None = None) -> tuple[np.ndarray, list[Box | None]]:
    """Side-by-side frames [T,H,W,3] -> uint8 [P,T,3,h,w] by the crop rule (one face box per person
    for the whole range so the framing never jitters)."""
    people = split_people(frames)
    if boxes is None:
        boxes = [clip_box(list(p)) for p in people]
    cropped = [np.stack([crop_to_framing(f, box, size) for f in person])
               for person, box in zip(people, boxes, strict=True)]
    return np.stack(cropped).transpose(0, 1, 4, 2, 3), boxes  # [P,T,3,h,w]


def align_offset(reference: np.ndarray, segment: np.ndarray, max_shift: int) -> int:
    """Lag (samples) that best aligns ``segment`` to ``reference`` by FFT cross-correlation:
    segment[n] ~ reference[n + lag]."""
    from scipy.signal import correlate

    n = min(len(reference), len(segment))
    corr = correlate(reference[: n + max_shift], segment[:n], mode="full", method="fft")
    lags = np.arange(-n + 1, len(reference[: n + max_shift]))
    keep = np.abs(lags) <= max_shift
    return int(lags[keep][np.argmax(corr[keep])])


def read_turn(video: str | os.PathLike, left_wav: str | os.PathLike, right_wav: str | os.PathLike, *,
              fps: int = FPS, size: tuple[int, int] = (128, 112), align: bool = True) -> Turn:
    """A turn clip and its two wav segments -> frames uint8 [P,T,3,H,W] and audio float32 [P,N] at
    16 kHz over the same time span (N = T * 640).

    The published clips are cut by stream copy (they start on a keyframe) while the wavs are cut
    exactly, so with ``align`` each wav is aligned to the clip's own audio track by
    cross-correlation; a clip still off by more than one frame raises ClipError."""
    frames = decode_frames(video, fps=fps)  # [T,H,W,3]
    audio = [load_audio(left_wav), load_audio(right_wav)]
    if align:
        audio = align_to_clip(Path(video), audio)
    T = min(len(frames), *(frames_for_samples(len(a)) for a in audio))
    if T == 0:
        raise ClipError(f"{video}: no frames with audio")
    people, boxes = crop_people(frames[:T], size)
    n = T * SAMPLES_PER_FRAME
    return Turn(frames=people, audio=np.stack([a[:n] for a in audio]).astype(np.float32), boxes=boxes)


def align_to_clip(video: Path, audio: list[np.ndarray]) -> list[np.ndarray]:
    """Shift a turn clip's two wav segments [N] each onto the clip's own audio track by cross-
    correlation (clips cut by stream copy start on a keyframe, before the turn); ClipError when the
    result is still off by more than one frame."""
    from dyadgen.io.audio import load_stereo

    try:
        track = load_stereo(video).mean(0)  # the clip's own audio, both channels
    except UserError:
        return audio  # no audio track to align against
    mix = audio[0][: len(audio[1])] + audio[1][: len(audio[0])]
    max_shift = 25 * SAMPLES_PER_FRAME  # search +-1 s
    lag = align_offset(track, mix, max_shift)
    # lag > 0: the clip starts earlier than the wavs (keyframe before the cut): pad the wavs
    shifted = [np.concatenate([np.zeros(lag, np.float32), a]) if lag > 0 else a[-lag:] for a in audio]
    residual = align_offset(track, shifted[0][: len(shifted[1])] + shifted[1][: len(shifted[0])], max_shift)
    if abs(residual) > SAMPLES_PER_FRAME:
        raise ClipError(f"{video}: audio still off by {residual / SAMPLES_PER_FRAME:.1f} frames after alignment")
    return shifted
