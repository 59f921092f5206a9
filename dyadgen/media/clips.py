"""Decode a time range of a side-by-side video at 25 fps, split it into the two people and crop them
by the shared crop rule; read a turn clip by its own timestamps with both people's audio.

decord does random-access decoding of raw videos where it is installed; PyAV decodes elsewhere,
always for turn clips (decord ignores their edit lists) and for a whole video streamed in pieces
(:func:`stream_frames`, what preprocessing reads). Whatever the source frame rate, output frame k is
the source frame showing time k / 25 of the video.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from scipy.signal import correlate

from dyadgen.clock import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from dyadgen.errors import UserError
from dyadgen.io.audio import resample
from dyadgen.io.video import probe_video
from dyadgen.media.crop import Box, clip_box, crop_to_framing


class ClipError(UserError):
    """A clip that cannot be used (corrupt, misaligned): skipped and counted in long jobs."""


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
    import decord  # optional: a wheel only for Linux x86-64; PyAV reads elsewhere

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    idx = _source_indices(reader.get_avg_fps(), len(reader), start, num_frames, fps)
    if idx.size == 0:
        return np.zeros((0, *reader[0].shape), np.uint8)
    return reader.get_batch(list(idx)).asnumpy()


def _decode_av(path: Path, start: float, num_frames: int | None, fps: int) -> np.ndarray:
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


def frame_count(path: str | os.PathLike, fps: int = FPS) -> int:
    """How many frames at ``fps`` the video's header promises (its stream's frame count and rate): a
    file cut short still has its whole header, so fewer decoded frames mean a damaged file."""
    info = probe_video(path)
    return len(_source_indices(info.fps, info.num_frames, 0.0, None, fps))


def stream_frames(path: str | os.PathLike, piece: int, fps: int = FPS):
    """The whole video as uint8 [n,H,W,3] pieces of ``piece`` frames at ``fps`` (the last may be
    shorter), decoded as they are asked for: memory is flat in the video's length. Frame k is the
    one :func:`decode_frames` gives; ClipError (naming the file) where decoding fails, even midway.
    PyAV decodes here, not decord: decord's reader grows while it is read in order (dmlc/decord
    #197, #208; measured: 1.7 GB after 1,000 frames of 1280x720, PyAV 0.19 GB flat)."""
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"{path}: file not found")
    yield from _stream_av(path, piece, fps)


def _stream_av(path: Path, piece: int, fps: int):
    held, k, last = [], 0, None  # k: the next output frame; output k shows source frame _source_index(k)
    try:
        with av.open(str(path)) as box:
            stream = box.streams.video[0]
            src_fps = float(stream.average_rate)
            for i, frame in enumerate(box.decode(stream)):
                last = frame.to_ndarray(format="rgb24")
                while int(np.floor(k / fps * src_fps + 1e-3)) == i:
                    held.append(last)
                    k += 1
                    if len(held) == piece:
                        yield np.stack(held)
                        held = []
    except Exception as err:
        raise ClipError(f"{path}: cannot decode frame {k} on ({type(err).__name__})") from None
    if last is None:
        raise ClipError(f"{path}: no video frames")
    if held:
        yield np.stack(held)


def sample_frames(path: str | os.PathLike, indices: list[int], fps: int = FPS) -> list[np.ndarray]:
    """Frames uint8 [H,W,3] at the given output indices (the ones :func:`stream_frames` gives), for
    finding the face box before the video is streamed."""
    try:
        import decord  # optional: a wheel only for Linux x86-64; PyAV reads elsewhere
    except ImportError:
        wanted, got = set(indices), {}
        for a, piece in enumerate(stream_frames(path, 64, fps)):
            got |= {a * 64 + j: piece[j] for j in range(len(piece)) if a * 64 + j in wanted}
        return [got[i] for i in indices if i in got]
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        idx = _source_indices(reader.get_avg_fps(), len(reader), 0.0, None, fps)
    except Exception as err:
        raise ClipError(f"{path}: cannot decode ({type(err).__name__}: {str(err)[:80]})") from None
    if max(indices, default=0) >= len(idx):
        raise ClipError(f"{path}: frame {max(indices)} is missing, only {len(idx)} frames decode "
                        "(truncated or damaged)")
    try:
        return list(reader.get_batch([int(idx[i]) for i in indices]).asnumpy())
    except Exception as err:  # the header read, the frames did not: decord fails here on some cuts
        raise ClipError(f"{path}: frames stop decoding ({type(err).__name__}: {str(err)[:80]}) "
                        "(truncated or damaged)") from None


def split_people(frames: np.ndarray) -> list[np.ndarray]:
    """Side-by-side frames uint8 [T,H,W,3] -> [left [T,H,W/2,3], right [T,H,W/2,3]]."""
    half = frames.shape[2] // 2
    return [frames[:, :, :half], frames[:, :, half: 2 * half]]


def people_boxes(frames: np.ndarray) -> list[Box | None]:
    """One face box per person (the crop rule's, over a few of the side-by-side frames [T,H,W,3])."""
    return [clip_box(list(person)) for person in split_people(frames)]


def video_boxes(path: str | os.PathLike, num_frames: int) -> list[Box | None]:
    """:func:`people_boxes` of a whole video from five of its ``num_frames`` frames, spread over it,
    without decoding the rest (for a video that is then streamed)."""
    probes = [int(i) for i in np.linspace(0, num_frames - 1, 5)]
    return people_boxes(np.stack(sample_frames(path, probes)))


def crop_people(frames: np.ndarray, size: tuple[int, int],
                boxes: list[Box | None] | None = None) -> tuple[np.ndarray, list[Box | None]]:
    """Side-by-side frames [T,H,W,3] -> uint8 [P,T,3,h,w] by the crop rule (one face box per person
    for the whole range so the framing never jitters)."""
    people = split_people(frames)
    if boxes is None:
        boxes = people_boxes(frames)
    cropped = [np.stack([crop_to_framing(f, box, size) for f in person])
               for person, box in zip(people, boxes, strict=True)]
    return np.stack(cropped).transpose(0, 1, 4, 2, 3), boxes  # [P,T,3,h,w]


def align_offset(reference: np.ndarray, segment: np.ndarray, max_shift: int) -> int:
    """Lag (samples) that best aligns ``segment`` to ``reference`` by FFT cross-correlation:
    segment[n] ~ reference[n + lag]."""
    n = min(len(reference), len(segment))
    corr = correlate(reference[: n + max_shift], segment[:n], mode="full", method="fft")
    lags = np.arange(-n + 1, len(reference[: n + max_shift]))
    keep = np.abs(lags) <= max_shift
    return int(lags[keep][np.argmax(corr[keep])])


TIME_SLACK = 0.03  # frames (1.2 ms)


def grid_frames(start: float, end: float) -> tuple[int, int]:
    """The video's 25 fps frames [first, stop) whose time k / 25 lies in [start, end), within
    ``TIME_SLACK`` (log times are truncated to the millisecond, so a turn logged at 1.159 s starts
    on frame 29 at 1.160 s)."""
    return int(np.ceil(start * FPS - TIME_SLACK)), int(np.ceil(end * FPS - TIME_SLACK))


@dataclass
class Span:
    """A stretch of a video on its own 25 fps grid: frame ``first`` is shown at ``first / 25`` s."""

    first: int
    frames: np.ndarray  # uint8 [T,H,W,3] side by side
    audio: np.ndarray  # float32 [2,N] at 16 kHz, N = T * 640, channel 0 = left person


def read_span(path: str | os.PathLike, start: float, end: float, *, origin: float = 0.0) -> Span:
    """Frames and stereo audio of ``[start, end)`` seconds of a video, placed by the file's own
    timestamps; ``origin`` is the video time at which the file's time 0 lies (a turn clip's log
    start). Turn clips cut by stream copy start on a keyframe before their turn and hide the
    pre-roll with an edit list: PyAV applies it (decord does not), and frames still before time 0
    are dropped here, so a clip reads exactly like the same span of the raw video."""
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"{path}: file not found")
    try:
        with av.open(str(path)) as box:
            times, images = [], []
            for frame in box.decode(box.streams.video[0]):
                times.append(float(frame.time))
                images.append(frame.to_ndarray(format="rgb24"))
        with av.open(str(path)) as box:
            if not box.streams.audio:
                raise ClipError(f"{path}: no audio track")
            stream = box.streams.audio[0]
            rate = stream.codec_context.sample_rate
            to_stereo = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
            pieces = [(float(f.time), f.to_ndarray())
                      for frame in box.decode(stream) for f in to_stereo.resample(frame)]
    except ClipError:
        raise
    except Exception as err:
        raise ClipError(f"{path}: cannot decode ({type(err).__name__}: {str(err)[:80]})") from None
    if not images:
        raise ClipError(f"{path}: no video frames")
    first, stop = grid_frames(start, end)
    order = np.argsort(times, kind="stable")
    times = np.asarray(times)[order]  # [F] seconds in the file
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1 / FPS
    stop = min(stop, int(np.ceil((origin + times[-1] + step - 1e-3) * FPS)))  # the file ends there
    wanted = np.arange(first, max(stop, first)) / FPS - origin  # [T] file time of each output frame
    wanted = wanted[wanted <= times[-1] + step - 1e-3]
    pick = np.clip(np.searchsorted(times, wanted + 1e-3, side="right") - 1, 0, len(times) - 1)
    frames = np.stack([images[order[i]] for i in pick]) if len(pick) else np.zeros((0, *images[0].shape), np.uint8)
    audio = _place_audio(pieces, rate, first / FPS - origin, len(frames))
    return Span(first, frames, audio)


def _place_audio(pieces: list[tuple[float, np.ndarray]], rate: int, start: float, num_frames: int) -> np.ndarray:
    """Decoded stereo pieces (file time, float32 [2,n]) -> float32 [2, num_frames * 640] at 16 kHz
    from file time ``start`` (silence where the file has no audio)."""
    end = max((round(t * rate) + x.shape[1] for t, x in pieces), default=0)
    track = np.zeros((2, max(end, 0)), np.float32)
    for t, x in pieces:
        a = round(t * rate)
        keep = x[:, max(0, -a):]
        track[:, max(a, 0): max(a, 0) + keep.shape[1]] = keep
    track = resample(track, rate, SAMPLE_RATE)
    n, s0 = num_frames * SAMPLES_PER_FRAME, round(start * SAMPLE_RATE)
    out = np.zeros((2, n), np.float32)
    piece = track[:, max(s0, 0): s0 + n]
    out[:, max(-s0, 0): max(-s0, 0) + piece.shape[1]] = piece[:, : n - max(-s0, 0)]
    return out


def check_against_segment(clip: Path, span: Span, channel: int, segment: np.ndarray, turn_start: float) -> None:
    """Cross-check a clip's channel against a wav segment [N] at 16 kHz of a turn starting at
    ``turn_start`` s inside it: ClipError when their audio disagrees by more than a frame."""
    expected = round((turn_start - span.first / FPS) * SAMPLE_RATE)
    reference = span.audio[channel]
    if expected < 0 or expected + len(segment) > len(reference) + SAMPLES_PER_FRAME or not np.any(segment):
        return  # the segment is not inside the clip: nothing to compare
    lag = align_offset(reference, segment, max_shift=expected + FPS * SAMPLES_PER_FRAME)
    if abs(lag - expected) > SAMPLES_PER_FRAME:
        raise ClipError(f"{clip}: audio disagrees with its wav segment by {(lag - expected) / SAMPLES_PER_FRAME:.1f} "
                        "frames")
