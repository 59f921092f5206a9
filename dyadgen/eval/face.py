"""Face measurements that work on real video, offline: dlib's face detector and 68-point landmark model
(the model file ships inside the face-recognition-models wheel, so nothing is downloaded).

    track(frames uint8 [T,H,W,3]) -> FaceTrack: landmarks [T,68,2], mouth opening [T] (inner-lip gap
    over mouth width), head pose [T,3] (pitch, yaw, roll in degrees), eye openness [T], found [T]

The detector runs every ``detect_every`` frames (it is the slow part) and its last box carries the
landmark model between detections. When it finds nothing, a ``prior`` box is used if given: evaluation
crops follow the crop rule, so the face sits where the rule put it (dyadgen.data.crop) - that keeps drawn
synthetic faces, which no detector finds, measurable; ``detected`` says which frames had a real detection.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dyadgen.errors import UserError

Box = tuple[int, int, int, int]  # x0, y0, x1, y1

# dlib's 68-point scheme (iBUG 300-W)
JAW, NOSE_TIP, CHIN = slice(0, 17), 30, 8
LEFT_EYE, RIGHT_EYE = list(range(36, 42)), list(range(42, 48))  # in the image: the person's right, then left eye
MOUTH_LEFT, MOUTH_RIGHT = 48, 54
INNER_TOP, INNER_BOTTOM = [61, 62, 63], [67, 66, 65]

# a generic head (millimetres, x right, y up, z towards the camera) for the pose: nose tip, chin, the eyes'
# outer corners and the mouth corners - the usual six-point model
HEAD_MODEL = np.array([(0.0, 0.0, 0.0), (0.0, -63.6, -12.5), (-43.3, 32.7, -26.0), (43.3, 32.7, -26.0),
                       (-28.9, -28.9, -24.1), (28.9, -28.9, -24.1)])
HEAD_POINTS = [NOSE_TIP, CHIN, 36, 45, MOUTH_LEFT, MOUTH_RIGHT]


@dataclass
class FaceTrack:
    landmarks: np.ndarray  # float32 [T,68,2] pixels (NaN where not found)
    mouth_opening: np.ndarray  # float32 [T]: inner-lip gap / mouth width (0 closed, ~0.5 wide open)
    head_pose: np.ndarray  # float32 [T,3]: pitch, yaw, roll in degrees
    eye_openness: np.ndarray  # float32 [T]: eye aspect ratio, both eyes averaged (~0.3 open, <0.15 shut)
    found: np.ndarray  # bool [T]: landmarks were fitted (by a detection or the prior box)
    detected: np.ndarray  # bool [T]: the face detector itself found the face in this frame or the last detection


def models_folder() -> Path:
    """face-recognition-models' data folder, located without importing the package (its __init__ needs
    pkg_resources, which new setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("face measurements need the eval extra: pip install -e '.[eval]' "
                        "(dlib-bin and face-recognition-models)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@lru_cache(maxsize=1)
def _dlib():
    try:
        import dlib
    except ImportError:
        raise UserError("face measurements need the eval extra: pip install -e '.[eval]' (dlib-bin)") from None
    predictor = dlib.shape_predictor(os.fspath(models_folder() / "shape_predictor_68_face_landmarks.dat"))
    return dlib, dlib.get_frontal_face_detector(), predictor


def detect(image: np.ndarray) -> Box | None:
    """The largest face dlib finds in uint8 [H,W,3] (small images are upsampled once), or None."""
    dlib, detector, _ = _dlib()
    image = np.ascontiguousarray(image)
    faces = detector(image, 1 if min(image.shape[:2]) < 400 else 0)
    if len(faces) == 0:
        return None
    f = max(faces, key=lambda r: r.area())
    return f.left(), f.top(), f.right(), f.bottom()


def landmarks(image: np.ndarray, box: Box) -> np.ndarray:
    """68 landmarks float32 [68,2] of the face in ``box``."""
    dlib, _, predictor = _dlib()
    shape = predictor(np.ascontiguousarray(image), dlib.rectangle(*box))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)  # [68,2]


def prior_box(size: tuple[int, int]) -> Box:
    """Where the crop rule puts the face in a crop of ``size`` = (H, W), as dlib frames faces (its boxes
    are tighter than OpenCV's: 0.65 of the rule's face height, measured on the synthetic faces)."""
    from dyadgen.data.crop import FACE_CENTRE, FACE_FRACTION

    H, W = size
    side = 0.65 * FACE_FRACTION * H
    cx, cy = W / 2, FACE_CENTRE * H
    return round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)


def mouth_opening(lm: np.ndarray) -> np.ndarray:
    """landmarks [...,68,2] -> [...]: mean inner-lip gap over mouth width."""
    gap = np.linalg.norm(lm[..., INNER_TOP, :] - lm[..., INNER_BOTTOM, :], axis=-1).mean(-1)
    width = np.linalg.norm(lm[..., MOUTH_LEFT, :] - lm[..., MOUTH_RIGHT, :], axis=-1)
    return gap / np.maximum(width, 1e-6)


def eye_openness(lm: np.ndarray) -> np.ndarray:
    """landmarks [...,68,2] -> [...]: eye aspect ratio (two lid gaps over the corner distance), both eyes."""
    def ratio(eye: list[int]) -> np.ndarray:
        p = lm[..., eye, :]  # [...,6,2]
        lids = (np.linalg.norm(p[..., 1, :] - p[..., 5, :], axis=-1)
                + np.linalg.norm(p[..., 2, :] - p[..., 4, :], axis=-1))
        return lids / np.maximum(2 * np.linalg.norm(p[..., 0, :] - p[..., 3, :], axis=-1), 1e-6)

    return (ratio(LEFT_EYE) + ratio(RIGHT_EYE)) / 2


def head_pose(lm: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """landmarks [68,2] of a frame of ``size`` (H, W) -> (pitch, yaw, roll) degrees from a PnP fit of
    the six-point head model with a pinhole camera whose focal length is the image width. Roll is
    positive when the head tilts clockwise in the image."""
    import cv2

    H, W = size
    camera = np.array([[W, 0, W / 2], [0, W, H / 2], [0, 0, 1]], np.float64)
    image_points = lm[HEAD_POINTS].astype(np.float64) * np.array([1, -1])  # y up, as in the model
    image_points = image_points + np.array([0, H])
    ok, rvec, _ = cv2.solvePnP(HEAD_MODEL, image_points, camera, None, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return np.full(3, np.nan, np.float32)
    rotation, _ = cv2.Rodrigues(rvec)
    angles = np.array(cv2.RQDecomp3x3(rotation)[0]) * np.array([1, 1, -1])  # pitch, yaw, roll
    return ((angles + 90) % 180 - 90).astype(np.float32)  # the flipped y axis adds half turns: fold them away


def track(frames: np.ndarray, *, prior: Box | None = None, detect_every: int = 5) -> FaceTrack:
    """Face measurements of one person's frames uint8 [T,H,W,3]."""
    T, H, W = frames.shape[:3]
    lms = np.full((T, 68, 2), np.nan, np.float32)  # [T,68,2]
    pose = np.full((T, 3), np.nan, np.float32)  # [T,3]
    found, detected = np.zeros(T, bool), np.zeros(T, bool)
    box, box_detected = None, False
    for t in range(T):
        if t % detect_every == 0 or box is None:
            hit = detect(frames[t])
            if hit is not None:
                box, box_detected = hit, True
            elif box is None or not box_detected:
                box = prior
        if box is None:
            continue
        lms[t] = landmarks(frames[t], box)
        pose[t] = head_pose(lms[t], (H, W))
        found[t], detected[t] = True, box_detected
    with np.errstate(invalid="ignore"):
        return FaceTrack(lms, mouth_opening(lms).astype(np.float32), pose, eye_openness(lms).astype(np.float32),
                         found, detected)


__all__ = ["FaceTrack", "track", "detect", "landmarks", "prior_box", "mouth_opening", "eye_openness", "head_pose"]
