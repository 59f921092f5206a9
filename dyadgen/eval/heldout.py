"""The held-out windows of a corpus in SocioEmoDialog's layout, and their ground truth.

The windows are picked with the training split rule (dialogue hash, or ``data.actor_map``), so nothing
scored was trained on. From a raw video: consecutive windows of ``seconds`` from its start. From a
folder with only the published turn clips: the start of each clip. Each person is rendered from their
OWN reference frame: another moment of the same video and side, at least a second away from the window,
where that person does not speak (a listening face), cropped with the same framing as the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dyadgen.clock import FPS, SAMPLES_PER_FRAME, frames_for_samples
from dyadgen.data.layout import SIDES
from dyadgen.data.socioemodialog import Clip, Video, read_clip, video_labels
from dyadgen.errors import UserError
from dyadgen.io.audio import load_audio, load_stereo
from dyadgen.io.video import probe_video
from dyadgen.media.clips import crop_people, decode_frames, read_span, split_people
from dyadgen.media.crop import Box, clip_box, crop_to_framing

REFERENCE_GAP = FPS  # frames between the scored window and its reference frame, at least


@dataclass
class HeldOutClip:
    """A window of a held-out video, on the video's 25 fps timeline."""

    video: Video
    first: int  # first frame of the window
    frames: int  # its length
    clip: Clip | None = None  # the turn clip it comes from (a folder without the raw video)

    @property
    def key(self) -> str:
        return f"{self.video.name}@{self.first:07d}+{self.frames}"


@dataclass
class GroundTruth:
    frames: np.ndarray  # uint8 [P,T,H,W,3] cropped by the crop rule
    audio: np.ndarray  # float32 [P,N] each person's own track, N = T * 640
    speaking: np.ndarray  # bool [P,T] from the corpus's turn timeline
    references: np.ndarray  # uint8 [P,H,W,3] each person's reference frame, same framing
    reference_frames: list[int]  # where on the timeline each reference was taken
    synthetic: dict[str, np.ndarray] | None  # ground_truth.npz arrays [P,T] of a `dyadgen synth` corpus
    emotion: np.ndarray | None = None  # long [P,T] each frame's emotion id (-1 unknown), from the turn timeline


def video_frames(video: Video) -> int:
    """Frames on the timeline of a video (its raw file, else the end of its last clip)."""
    if video.raw_video is not None:
        return int(probe_video(video.raw_video).duration * FPS)
    ends = [c.end for c in video.clips if c.end is not None]
    return int(max(ends) * FPS) if ends else 0


def windows_of(video: Video, seconds: float) -> list[HeldOutClip]:
    length = int(round(seconds * FPS))
    if video.raw_video is not None:
        total = video_frames(video)
        return [HeldOutClip(video, s, length) for s in range(0, total - length + 1, length)]
    out = []
    for clip in video.clips:
        if clip.start is not None and clip.end is not None and (clip.end - clip.start) * FPS >= length:
            out.append(HeldOutClip(video, int(np.ceil(clip.start * FPS - 0.03)), length, clip))
    return out


def held_out_clips(videos: list[Video], splitter, split: str, seconds: float, max_clips: int = 0,
                   skipped: list[tuple[str, str]] | None = None) -> list[HeldOutClip]:
    """The windows of the videos in ``split`` (``all`` for every video), at most ``max_clips``
    (0 = all), spread over the videos: the first window of each video, then the second, ..."""
    per_video = []
    for video in videos:
        try:
            if split == "all" or splitter(video.name, video.dialogue_id) == split:
                per_video.append(windows_of(video, seconds))
        except UserError as err:
            if skipped is not None:
                skipped.append((video.name, str(err)))
    order = [w for rank in range(max(map(len, per_video), default=0)) for ws in per_video if rank < len(ws)
             for w in [ws[rank]]]
    return order[:max_clips] if max_clips else order


def _speaking(video: Video, first: int, frames: int) -> np.ndarray:
    return video_labels(video, frames, first)[0]


def reference_frames(video: Video, window: HeldOutClip, total: int) -> list[int]:
    """Per person: the frame nearest to the window, at least REFERENCE_GAP away from it, where that
    person is silent (else where they speak the least: any frame outside the window)."""
    speaking = _speaking(video, 0, total)  # [P,total]
    outside = np.ones(total, bool) if video.raw_video is not None else np.zeros(total, bool)
    for clip in video.clips if video.raw_video is None else []:  # only the turn clips show the video
        if clip.start is not None and clip.end is not None:
            outside[int(np.ceil(clip.start * FPS)): int(clip.end * FPS)] = True
    outside[max(0, window.first - REFERENCE_GAP): window.first + window.frames + REFERENCE_GAP] = False
    if not outside.any():
        raise UserError(f"{video.name}: no frame a second away from the window to take a reference from "
                        f"(the video is {total / FPS:.1f} s, the window {window.frames / FPS:.1f} s)")
    distance = np.minimum(np.abs(np.arange(total) - window.first), np.abs(np.arange(total) - window.first
                                                                          - window.frames))  # [total]
    picks = []
    for p in range(2):
        quiet = outside & ~speaking[p]
        pool = quiet if quiet.any() else outside
        picks.append(int(np.flatnonzero(pool)[np.argmin(distance[pool])]))
    return picks


def _frame_at(video: Video, frame: int) -> np.ndarray:
    """One side-by-side frame uint8 [H,W,3] of the timeline: from the raw video, else from the turn clip
    that covers it."""
    if video.raw_video is not None:
        return decode_frames(video.raw_video, frame / FPS, 1)[0]
    for clip in video.clips:
        if clip.start is not None and clip.end is not None and clip.start * FPS <= frame < clip.end * FPS:
            t = frame / FPS
            return read_span(clip.path, t, t + 1.5 / FPS, origin=clip.start).frames[0]
    raise UserError(f"{video.name}: no clip covers frame {frame} for a reference")


def _tracks(video: Video, window: HeldOutClip, span_audio: np.ndarray | None) -> np.ndarray:
    """Each person's own track over the window float32 [P,N]: their `_mute` / channel wav, else the
    stereo track of the file the frames came from."""
    n = window.frames * SAMPLES_PER_FRAME
    start = window.first * SAMPLES_PER_FRAME
    if len(video.channel_wavs) == 2:
        tracks = [load_audio(video.channel_wavs[side])[start: start + n] for side in SIDES]
    elif span_audio is not None:
        tracks = list(span_audio[:, :n])
    else:
        tracks = list(load_stereo(video.raw_video)[:, start: start + n])
    return np.stack([np.pad(t, (0, n - len(t))) for t in tracks]).astype(np.float32)  # [P,N]


def read_truth(window: HeldOutClip, size: tuple[int, int]) -> GroundTruth:
    """The ground truth of a window: cropped frames, own tracks, roles, references (UserError if unusable)."""
    video = window.video
    span_audio = None
    if window.clip is None:
        frames = decode_frames(video.raw_video, window.first / FPS, window.frames)  # [T,H,W,3]
    else:
        span = read_clip(video, window.clip)  # starts on the window's first frame (the same grid rule)
        frames, span_audio = span.frames[: window.frames], span.audio
    if len(frames) < window.frames:
        raise UserError(f"{video.name}: {len(frames)} frames at {window.first / FPS:.1f} s, "
                        f"fewer than the window's {window.frames}")
    crops, boxes = crop_people(frames, size)  # [P,T,3,H,W]
    audio = _tracks(video, window, span_audio)
    T = min(window.frames, frames_for_samples(audio.shape[1]))
    total = max(video_frames(video), window.first + window.frames)
    picks = reference_frames(video, window, total)
    references = np.stack([_crop_side(_frame_at(video, f), p, boxes[p], size) for p, f in enumerate(picks)])
    synthetic = None
    truth_file = video.folder / "ground_truth.npz"
    if truth_file.is_file():
        with np.load(truth_file) as z:
            synthetic = {k: z[k][:, window.first: window.first + T] for k in z.files}
    return GroundTruth(crops.transpose(0, 1, 3, 4, 2)[:, :T], audio[:, : T * SAMPLES_PER_FRAME],
                       _speaking(video, window.first, T), references, picks, synthetic,
                       video_labels(video, T, window.first)[1])


def _crop_side(frame: np.ndarray, person: int, box: Box | None, size: tuple[int, int]) -> np.ndarray:
    side = split_people(frame[None])[person][0]  # [H,W/2,3]
    return crop_to_framing(side, box if box is not None else clip_box([side]), size)


def clip_folder(out: Path, window: HeldOutClip) -> Path:
    return out / "clips" / window.key.replace("@", "_").replace("+", "_")
