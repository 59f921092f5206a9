"""The one crop rule, shared by training frames and user portraits.

A face box from OpenCV's frontal-face detector -> a fixed framing around it at the model's aspect
(the face fills ``FACE_FRACTION`` of the crop's height, its centre a little above the crop's centre);
no face -> a centre crop at the model's aspect (counted by the caller for training data; an error
for a portrait, where a face is required).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from dyadgen.errors import UserError

FACE_FRACTION = 0.65  # face box height / crop height: a head-and-shoulders framing
FACE_CENTRE = 0.45  # the face centre sits at this fraction of the crop's height

Box = tuple[int, int, int, int]  # x0, y0, x1, y1


@lru_cache(maxsize=1)
def _detector():
    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def face_box(image: np.ndarray) -> Box | None:
    """The largest frontal face in an RGB image uint8 [H,W,3], or None."""
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    min_side = max(24, min(gray.shape) // 6)
    faces = _detector().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return int(x), int(y), int(x + w), int(y + h)


def framing(image_hw: tuple[int, int], box: Box | None, size: tuple[int, int]) -> Box:
    """The crop window (x0, y0, x1, y1), possibly reaching outside the image, for ``size`` = (H, W)."""
    H, W = image_hw
    aspect = size[1] / size[0]  # width / height
    if box is None:
        ch = min(H, W / aspect)
        cw = ch * aspect
        cx, cy = W / 2, H / 2
    else:
        x0, y0, x1, y1 = box
        ch = (y1 - y0) / FACE_FRACTION
        cw = ch * aspect
        cx = (x0 + x1) / 2
        cy = (y0 + y1) / 2 + (0.5 - FACE_CENTRE) * ch
    left, top = round(cx - cw / 2), round(cy - ch / 2)
    return left, top, left + round(cw), top + round(ch)


def crop_to_framing(image: np.ndarray, box: Box | None, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H0,W0,3] -> uint8 [H,W,3]: the framing around ``box`` (centre crop for None), resized.
    Parts of the window outside the image are filled by replicating the border."""
    x0, y0, x1, y1 = framing(image.shape[:2], box, size)
    H0, W0 = image.shape[:2]
    pad = max(0, -x0, -y0, x1 - W0, y1 - H0)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    window = image[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if window.shape[0] > size[0] else cv2.INTER_LINEAR
    return cv2.resize(window, (size[1], size[0]), interpolation=interp)


def crop_portrait(image: str | os.PathLike | np.ndarray, size: tuple[int, int], *,
                  require_face: bool = True) -> np.ndarray:
    """A user's reference portrait (any size) -> uint8 [H,W,3] by the crop rule."""
    name = "portrait"
    if not isinstance(image, np.ndarray):
        name = str(image)
        if not Path(image).is_file():
            raise UserError(f"{name}: file not found")
        try:
            with Image.open(image) as im:
                image = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError):
            raise UserError(f"{name}: not a readable image") from None
    box = face_box(image)
    if box is None and require_face:
        raise UserError(f"{name}: no face found (use a frontal portrait with the face clearly visible)")
    return crop_to_framing(image, box, size)


def clip_box(frames: list[np.ndarray], samples: int = 5) -> Box | None:
    """One face box for a whole clip (median over a few frames), so the framing does not jitter.
    None when fewer than half the sampled frames show a face."""
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, min(samples, len(frames))).astype(int)]
    boxes = [b for b in map(face_box, picks) if b is not None]
    if len(boxes) * 2 < len(picks) or not boxes:
        return None
    return tuple(int(v) for v in np.median(np.array(boxes), axis=0))  # type: ignore[return-value]
