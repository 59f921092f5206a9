"""Video statistics of one person's frames, as SocioEmoDialog's paper argues its data quality with (their
eval_tools/video: body segmentation for framing occupancy, OpenFace for the eyes, head-pose heatmaps):

- framing occupancy: the share of the frame the person covers. Each sampled frame is segmented by
  OpenCV's GrabCut (no trained weights; the paper uses a body-segmentation network), seeded from the
  tracked face: the face's core is person, a head-and-shoulders region around and below it probably
  person, the top corners and the sides beside the head probably background;
- face-position heatmap (face-box centres, in the frame's own [0, 1] coordinates), body-position heatmap
  (how often each place of the frame is person), head-pose heatmap (yaw x pitch, degrees);
- blinks per minute (the eye openness falling below 70 % of the person's median for 1-10 frames, dlib's
  landmarks where the paper uses OpenFace's eye tracking) and the mean eye openness;
- face position, size and jitter (the frame-to-frame movement of the face-box centre, in frame widths).

    person_stats(track, size, sampled frames) -> PersonStats (scalars and heatmaps)
    video_stats(path, seconds) -> [left, right] PersonStats of a side-by-side video, streamed
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from dyadgen.clock import FPS
from dyadgen.eval.face import FaceTrack, TrackBuilder
from dyadgen.io.plots import pyplot
from dyadgen.media.clips import split_people, stream_frames

SEGMENT_EVERY = FPS  # frames between segmented frames (one a second)
SEGMENT_SIDE = 128  # GrabCut runs on the frame scaled so that its longer side is this
HEAT = 32  # heatmap bins per side
POSE_RANGE = 45.0  # head-pose heatmap spans -45..45 degrees of yaw and pitch
BLINK_DROP = 0.7  # a blink: eye openness below this share of the person's median ...
BLINK_FRAMES = (1, 10)  # ... for this many frames (longer is a closed-eye look, not a blink)

SCALARS = {
    "occupancy": "share of the frame the person covers (GrabCut seeded by the face track, one frame a second)",
    "face_x": "mean horizontal position of the face-box centre, in frame widths from the left",
    "face_y": "mean vertical position of the face-box centre, in frame heights from the top",
    "face_size": "mean face-box side over the frame height",
    "face_jitter": "mean frame-to-frame movement of the face-box centre, in frame widths (framing steadiness)",
    "blink_rate": "blinks per minute (eye openness below 70 % of the person's median for 1-10 frames)",
    "eye_openness": "mean eye aspect ratio (dlib landmarks)",
    "face_found": "share of frames with a tracked face",
}


@dataclass
class PersonStats:
    values: dict[str, float | None]  # SCALARS
    seconds: float
    face_heat: np.ndarray = field(default_factory=lambda: np.zeros((HEAT, HEAT)))  # counts [y,x]
    body_heat: np.ndarray = field(default_factory=lambda: np.zeros((HEAT, HEAT)))  # sum of person masks [y,x]
    pose_heat: np.ndarray = field(default_factory=lambda: np.zeros((HEAT, HEAT)))  # counts [pitch,yaw]
    segmented: int = 0  # frames segmented (body_heat / segmented is the share of time each place is person)


def person_mask(frame: np.ndarray, box) -> np.ndarray:
    """bool [H,W]: where the person is, by GrabCut seeded from the face box (x0, y0, x1, y1)."""
    H, W = frame.shape[:2]
    scale = SEGMENT_SIDE / max(H, W)
    small = cv2.resize(frame, (max(8, round(W * scale)), max(8, round(H * scale))), interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    x0, y0, x1, y1 = (v * scale for v in box)
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    seed = np.full((h, w), cv2.GC_PR_BGD, np.uint8)

    def region(top, bottom, half_width):  # rows cy + top*side .. cy + bottom*side, columns cx +- half_width*side
        return (slice(int(np.clip(cy + top * side, 0, h)), int(np.clip(cy + bottom * side, 0, h))),
                slice(int(np.clip(cx - half_width * side, 0, w)), int(np.clip(cx + half_width * side, 0, w))))

    seed[region(-1.0, 0.7, 0.75)] = cv2.GC_PR_FGD  # the head with its hair
    seed[region(0.7, 99, 1.8)] = cv2.GC_PR_FGD  # neck, shoulders and torso, wider than the head
    beside = int(np.clip(cy + 0.4 * side, 0, h))  # beside the head, above the shoulders: background
    seed[:beside, : int(np.clip(cx - 1.05 * side, 0, w))] = cv2.GC_BGD
    seed[:beside, int(np.clip(cx + 1.05 * side, 0, w)):] = cv2.GC_BGD
    seed[region(-99, -1.3, 99)] = cv2.GC_BGD  # well above the hair
    seed[region(-0.3, 0.3, 0.3)] = cv2.GC_FGD  # the face's core
    seed[region(1.2, 99, 0.4)] = cv2.GC_FGD  # the chest below it
    person = (seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)
    if person.all() or not person.any():  # the person fills the frame (or the box lies outside it): no
        return cv2.resize(person.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)  # model
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation draws from OpenCV's generator: fixed, so runs repeat
    cv2.grabCut(small, seed, None, background, foreground, 3, cv2.GC_INIT_WITH_MASK)
    person = (seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)
    return cv2.resize(person.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)


def blinks(eye: np.ndarray) -> int:
    """Count of blinks in an eye-openness series [T] (NaN where no face)."""
    ok = np.isfinite(eye)
    if ok.sum() < 3:
        return 0
    shut = ok & (eye < BLINK_DROP * np.median(eye[ok]))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], shut.astype(np.int8), [0]])))
    lengths = edges[1::2] - edges[::2]
    return int(((lengths >= BLINK_FRAMES[0]) & (lengths <= BLINK_FRAMES[1])).sum())


def _heat(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    keep = np.isfinite(x) & np.isfinite(y)
    counts, _, _ = np.histogram2d(y[keep], x[keep], bins=HEAT, range=[[lo, hi], [lo, hi]])
    return counts  # [y,x]


def person_stats(track: FaceTrack, size: tuple[int, int], sampled: list[tuple[int, np.ndarray]]) -> PersonStats:
    """The statistics of one person's frames of ``size`` (H, W) from their face track and the frames
    ``sampled`` for segmentation, as (frame index, uint8 [H,W,3]) pairs (one a second: SEGMENT_EVERY)."""
    H, W = size
    T = len(track.found)
    boxes = track.boxes if track.boxes is not None else np.full((T, 4), np.nan)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 / W, (boxes[:, 1] + boxes[:, 3]) / 2 / H  # [T] each
    stats = PersonStats({}, T / FPS)
    occupancy = []
    for t, frame in sampled:
        if not np.isfinite(boxes[t]).all():
            continue
        mask = person_mask(frame, boxes[t])
        occupancy.append(float(mask.mean()))
        stats.body_heat += cv2.resize(mask.astype(np.float32), (HEAT, HEAT), interpolation=cv2.INTER_AREA)
        stats.segmented += 1
    stats.face_heat = _heat(cx, cy, 0.0, 1.0)
    stats.pose_heat = _heat(track.head_pose[:, 1], track.head_pose[:, 0], -POSE_RANGE, POSE_RANGE)
    stats.values = {"occupancy": _mean(occupancy), **track_values(boxes, track.eye_openness, size),
                    "face_found": float(track.found.mean()) if T else None}
    return stats


def track_values(boxes: np.ndarray, eye: np.ndarray, size: tuple[int, int]) -> dict[str, float | None]:
    """The statistics a face track gives without pixels: face boxes [T,4] and eye openness [T] (NaN where
    no face) of frames of ``size`` (H, W) -> face_x, face_y, face_size, face_jitter, blink_rate, eye_openness."""
    H, W = size
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 / W, (boxes[:, 1] + boxes[:, 3]) / 2 / H  # [T] each
    side = np.sqrt(np.clip((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 0, None)) / H
    steps = np.hypot(np.diff(cx), np.diff(cy) * H / W)  # frame widths
    return {"face_x": _mean(cx), "face_y": _mean(cy), "face_size": _mean(side), "face_jitter": _mean(steps),
            "blink_rate": blinks(eye) / (len(eye) / FPS / 60) if np.isfinite(eye).any() else None,
            "eye_openness": _mean(eye)}


def _mean(x) -> float | None:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def merge(parts: list[PersonStats]) -> PersonStats:
    """Statistics of several videos of one person or side: values weighted by duration, heatmaps summed."""
    total = sum(p.seconds for p in parts)
    out = PersonStats({}, total)
    for key in SCALARS:
        pairs = [(p.values.get(key), p.seconds) for p in parts if p.values.get(key) is not None]
        out.values[key] = (sum(v * s for v, s in pairs) / sum(s for _, s in pairs)) if pairs else None
    for p in parts:
        out.face_heat = out.face_heat + p.face_heat
        out.body_heat = out.body_heat + p.body_heat
        out.pose_heat = out.pose_heat + p.pose_heat
        out.segmented += p.segmented
    return out


def video_stats(path, seconds: float = 60.0, detect_every: int = 5) -> list[PersonStats]:
    """The statistics of both people of a side-by-side video (SocioEmoDialog's raw video, a turn clip, or what
    `dyadgen infer` writes), its first ``seconds`` (0 = all) streamed: memory does not grow with its length."""
    limit = int(seconds * FPS) if seconds > 0 else None
    builders, sampled, size, t = None, [[], []], None, 0
    for piece in stream_frames(path, 64):
        people = split_people(piece)
        if builders is None:
            size = people[0].shape[1:3]
            builders = [TrackBuilder(size, detect_every=detect_every) for _ in people]
        for i in range(len(piece)):
            if limit is not None and t >= limit:
                break
            for p, frames in enumerate(people):
                builders[p].add(frames[i])
                if t % SEGMENT_EVERY == 0:
                    sampled[p].append((t, np.ascontiguousarray(frames[i])))
            t += 1
        if limit is not None and t >= limit:
            break
    if builders is None or t == 0:
        raise ValueError(f"{path}: no frames")
    return [person_stats(b.finish(), size, s) for b, s in zip(builders, sampled, strict=True)]


def plot_heatmaps(path, named: dict[str, PersonStats]) -> None:
    """One row per person or side: face position, body position and head-pose heatmaps."""
    plt = pyplot()

    fig, axes = plt.subplots(len(named), 3, figsize=(10, 3.2 * len(named)), squeeze=False)
    for row, (name, s) in zip(axes, named.items(), strict=True):
        row[0].imshow(s.face_heat, extent=(0, 1, 1, 0), cmap="magma")
        row[0].set_title(f"{name}: face position")
        row[1].imshow(s.body_heat / max(s.segmented, 1), extent=(0, 1, 1, 0), cmap="magma", vmin=0, vmax=1)
        row[1].set_title(f"{name}: body (share of time)")
        row[2].imshow(s.pose_heat, extent=(-POSE_RANGE, POSE_RANGE, POSE_RANGE, -POSE_RANGE), cmap="magma")
        row[2].set_title(f"{name}: head pose")
        row[2].set_xlabel("yaw (degrees)")
        row[2].set_ylabel("pitch (degrees, + down)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


__all__ = ["PersonStats", "person_stats", "video_stats", "person_mask", "blinks", "merge", "plot_heatmaps", "SCALARS"]
