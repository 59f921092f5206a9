"""Talking and listening measured from pixels: mouth opening and head nods of one person's frames.

The synthetic faces (dyadgen.data.faces) draw the inside of an open mouth near-black, darker than
anything else in the lower face, so the mouth opening of a frame is the share of dark pixels in the
lower-middle of the crop. A nod moves the head down, so it shows as a vertical shift of the frame's
row profile against the person's neutral frame. Both work on generated (blurry) frames as on the
ground truth: they look at coarse structure only.
"""

from __future__ import annotations

import numpy as np

DARK = 48  # luminance below which a lower-face pixel counts as the inside of the mouth
MOUTH_ROWS = (0.55, 0.95)  # the mouth region, as fractions of the crop's height ...
MOUTH_COLS = (0.25, 0.75)  # ... and width (the crop rule puts the face there)


def _luminance(frames: np.ndarray) -> np.ndarray:
    """uint8 frames [T,3,H,W] -> float32 luminance [T,H,W]."""
    x = frames.astype(np.float32)
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def mouth_opening(frames: np.ndarray) -> np.ndarray:
    """One person's frames uint8 [T,3,H,W] -> mouth opening float32 [T]: the fraction of the mouth
    region that is dark, above the clip's most closed frames (its 5th percentile, so dark hair or a
    beard in the region does not count): 0 for a closed mouth, around 0.1 when wide open."""
    lum = _luminance(frames)
    H, W = lum.shape[1:]
    r0, r1 = (int(f * H) for f in MOUTH_ROWS)
    c0, c1 = (int(f * W) for f in MOUTH_COLS)
    dark = (lum[:, r0:r1, c0:c1] < DARK).mean(axis=(1, 2))  # [T]
    return (dark - np.quantile(dark, 0.05)).clip(0).astype(np.float32)


def head_drop(frames: np.ndarray, max_shift: int = 12) -> np.ndarray:
    """One person's frames uint8 [T,3,H,W] -> how far the head sits below its usual height, in
    pixels, float32 [T] (a nod is a bump of a few pixels). The row-luminance profile of the face
    columns of each frame is matched against the median profile of the clip."""
    lum = _luminance(frames)
    W = lum.shape[2]
    rows = lum[:, :, W // 4: 3 * W // 4].mean(axis=2)  # [T,H]
    rows = rows - rows.mean(axis=1, keepdims=True)
    reference = np.median(rows, axis=0)  # [H]
    H = rows.shape[1]
    shifts = np.arange(-max_shift, max_shift + 1)
    inner = slice(max_shift, H - max_shift)
    errors = np.stack([((rows[:, inner] - np.roll(reference, s)[inner]) ** 2).mean(axis=1) for s in shifts])  # [S,T]
    return shifts[errors.argmin(axis=0)].astype(np.float32)


def motion_energy(frames: np.ndarray) -> np.ndarray:
    """One person's frames uint8 [T,3,H,W] -> how much the picture changes into each frame, float32 [T]:
    the mean absolute luminance difference from the frame before (0 for the first), in 0..255 levels.
    Any change counts, a moving mouth as much as flickering artefacts."""
    lum = _luminance(frames)
    return np.concatenate([[0.0], np.abs(np.diff(lum, axis=0)).mean(axis=(1, 2))]).astype(np.float32)


def motion_contrast(frames: np.ndarray, speaking: np.ndarray, listening: np.ndarray) -> float:
    """How much more one person's picture moves while they speak than while only the partner speaks:
    mean :func:`motion_energy` over ``speaking`` frames / over ``listening`` frames (bool [T] each)."""
    energy = motion_energy(frames)
    moving = energy[listening].mean() if listening.any() else float("nan")
    return float(energy[speaking].mean() / max(moving, 1e-6)) if speaking.any() else float("nan")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two series (0 when either is constant)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


__all__ = ["mouth_opening", "head_drop", "motion_energy", "motion_contrast", "correlation", "DARK"]
