"""Face measurements that work on real video, offline: dlib's face detector and 68-point landmark model
(the model file ships inside the face-recognition-models wheel, so nothing is downloaded).

    track(frames uint8 [T,H,W,3]) -> FaceTrack: landmarks [T,68,2], mouth opening [T] (inner-lip gap
    over mouth width), head pose [T,3] (pitch, yaw, roll in degrees), eye openness [T], face box [T,4],
    found [T], detected [T]

The tracker follows ONE person. Between detections the box is carried by the landmarks themselves (the
box of frame t comes from the landmarks of frame t-1), so a moving or tilting head is followed even
where the detector sees no face. When the detector runs (every ``detect_every`` frames, and on any
frame where the landmarks jump), the detection that continues the track (overlap and size) is taken
over any other, however high the other's score: a round patch on a shirt or a second, smaller face in
the picture never takes the track over. A detection far from the track is accepted only when the
track itself has no detection behind it for ``reacquire`` detector runs in a row while the far one is
found at the same place each time (the person really moved, or the first box was wrong).

When the detector finds nothing and no track exists yet, a ``prior`` box is used if given: evaluation
crops follow the crop rule, so the face sits where the rule put it (dyadgen.media.crop) - that keeps drawn
synthetic faces, which no detector finds, measurable.

Head pose is a perspective fit (PnP) of a generic 3-D 68-point face (``FACE_MODEL``, millimetres, in the
camera's own axes: x right, y down, z away from the camera) to the rigid landmarks (eyes and nose; not the
jaw or lips, which move when the person speaks): EPnP for a start, or the previous frame's pose, then
Levenberg-Marquardt refinement. The in-plane angle of the eye line checks the roll; a fit that disagrees
with it by more than ``ROLL_CHECK`` degrees is solved again from EPnP alone. A zero-phase 5-frame binomial
filter (no delay: a nod's peak stays on its frame) takes out landmark jitter.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2  # OpenCV is a core dependency; imported here to keep `import dyadgen.eval` light
import numpy as np
from scipy.spatial.transform import Rotation

from dyadgen.errors import UserError
from dyadgen.media.crop import FACE_CENTRE, FACE_FRACTION

Box = tuple[int, int, int, int]  # x0, y0, x1, y1

# dlib's 68-point scheme (iBUG 300-W)
JAW, NOSE_TIP, CHIN = slice(0, 17), 30, 8
LEFT_EYE, RIGHT_EYE = list(range(36, 42)), list(range(42, 48))  # in the image: the person's right, then left eye
MOUTH_LEFT, MOUTH_RIGHT = 48, 54
INNER_TOP, INNER_BOTTOM = [61, 62, 63], [67, 66, 65]
# the points the head pose is fitted to: the jaw line's top (beside the ears), brows, nose and eyes - not the
# chin, lips or the jaw's lower half, which move when the person speaks (nose and eyes alone leave pitch
# ill-conditioned: their depths differ too little)
POSE_POINTS = [0, 1, 2, 14, 15, 16, *range(17, 48)]

ROLL_CHECK = 8.0  # degrees between the PnP roll and the eye line's angle beyond which the fit is redone
SMOOTH = np.array([1, 4, 6, 4, 1], np.float64) / 16  # zero-phase binomial filter over frames (sigma 1 frame)


def _face_model() -> np.ndarray:
    """A generic adult face, 68 points in millimetres (x right, y down, z away from the camera; the nose tip
    is the origin), laid out from average facial proportions: the eyes' outer corners 90 mm apart, the nose
    tip 35 mm in front of them, the chin 68 mm below the nose tip."""
    pts = np.zeros((68, 3))
    phi = np.linspace(0, np.pi, 17)  # the jaw from the image-left ear round the chin to the right ear
    pts[0:17] = np.stack([-70 * np.cos(phi), -30 + 98 * np.sin(phi), 20 + 62 * np.cos(phi) ** 2], 1)
    brow_x = np.linspace(-62, -14, 5)
    arch = -52 - 9 * np.sin(np.linspace(0.3, np.pi - 0.3, 5))
    pts[17:22] = np.stack([brow_x, arch, 22 + 22 * ((brow_x + 14) / -48) ** 2], 1)
    pts[22:27] = pts[21:16:-1] * np.array([-1, 1, 1])
    pts[27:31] = [(0, -45, 24), (0, -31, 16), (0, -16, 8), (0, 0, 0)]  # bridge down to the tip
    pts[31:36] = [(-15, 9, 16), (-8, 11, 11), (0, 12, 9), (8, 11, 11), (15, 9, 16)]  # under the nose
    right_eye = [(-45, -35, 35), (-38, -39, 31), (-26, -39, 30), (-17, -35, 31), (-26, -31, 30), (-38, -31, 31)]
    pts[36:42] = right_eye
    pts[42:48] = [(-x, y, z) for x, y, z in (right_eye[i] for i in (3, 2, 1, 0, 5, 4))]
    outer = [(-25, 30, 27), (-16, 25, 18), (-6, 22, 13), (0, 23, 12), (6, 22, 13), (16, 25, 18), (25, 30, 27),
             (16, 37, 19), (6, 40, 15), (0, 41, 14), (-6, 40, 15), (-16, 37, 19)]
    pts[48:60] = outer
    pts[60:68] = [(-20, 30, 24), (-7, 29, 16), (0, 29, 15), (7, 29, 16), (20, 30, 24), (7, 31, 16), (0, 31, 15),
                  (-7, 31, 16)]
    return pts


FACE_MODEL = _face_model()  # [68,3] mm


@dataclass
class FaceTrack:
    landmarks: np.ndarray  # float32 [T,68,2] pixels (NaN where not found)
    mouth_opening: np.ndarray  # float32 [T]: inner-lip gap / mouth width (0 closed, ~0.5 wide open)
    head_pose: np.ndarray  # float32 [T,3]: pitch (+ = down), yaw (+ = towards the image's left), roll (+ = clockwise)
    eye_openness: np.ndarray  # float32 [T]: eye aspect ratio, both eyes averaged (~0.3 open, <0.15 shut)
    found: np.ndarray  # bool [T]: landmarks were fitted on the tracked face (after a detection, carried, or prior)
    detected: np.ndarray  # bool [T]: the last detector run (at most detect_every - 1 frames ago) found THIS face
    boxes: np.ndarray | None = None  # float32 [T,4] the tracked face box x0, y0, x1, y1 (NaN where not found)


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
        import dlib  # heavy optional dependency (the eval extra): imported on first use
    except ImportError:
        raise UserError("face measurements need the eval extra: pip install -e '.[eval]' (dlib-bin)") from None
    predictor = dlib.shape_predictor(os.fspath(models_folder() / "shape_predictor_68_face_landmarks.dat"))
    return dlib, dlib.get_frontal_face_detector(), predictor


def detections(image: np.ndarray) -> list[tuple[Box, float]]:
    """Every face box dlib finds in uint8 [H,W,3] with its detector score (small images are upsampled once)."""
    dlib, detector, _ = _dlib()
    image = np.ascontiguousarray(image)
    rects, scores, _ = detector.run(image, 1 if min(image.shape[:2]) < 400 else 0, 0.0)
    return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores, strict=True)]


def detect(image: np.ndarray) -> Box | None:
    """The largest face dlib finds in uint8 [H,W,3], or None (how a track starts)."""
    found = detections(image)
    return max(found, key=lambda d: _area(d[0]))[0] if found else None


def landmarks(image: np.ndarray, box: Box) -> np.ndarray:
    """68 landmarks float32 [68,2] of the face in ``box``."""
    dlib, _, predictor = _dlib()
    shape = predictor(np.ascontiguousarray(image), dlib.rectangle(*(int(round(v)) for v in box)))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)  # [68,2]


def prior_box(size: tuple[int, int]) -> Box:
    """Where the crop rule puts the face in a crop of ``size`` = (H, W), as dlib frames faces (its boxes
    are tighter than OpenCV's: 0.65 of the rule's face height, measured on the synthetic faces)."""
    H, W = size
    side = 0.65 * FACE_FRACTION * H
    cx, cy = W / 2, FACE_CENTRE * H
    return round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)


def mouth_opening(lm: np.ndarray) -> np.ndarray:
    """landmarks [...,68,2] -> [...]: mean inner-lip gap over mouth width."""
    gap = np.linalg.norm(lm[..., INNER_TOP, :] - lm[..., INNER_BOTTOM, :], axis=-1).mean(-1)
    width = np.linalg.norm(lm[..., MOUTH_LEFT, :] - lm[..., MOUTH_RIGHT, :], axis=-1)
    return gap / np.maximum(width, 1e-6)


def collapsed_fit(landmarks: np.ndarray) -> np.ndarray:
    """bool [T]: frames whose landmark fit collapsed (the eyes' centres under a pixel apart, or all 68 points
    within 2 px of their mean), as dlib does on a smeared face. Divided by their eye distance, such a fit
    reads as an expression 10^5 times larger than any face's (one frame of it made a window's FD 10^11) and
    as a wide-open mouth, so the tracker reports such a frame as one without a face."""
    eyes = np.linalg.norm(landmarks[:, 36:42].mean(1) - landmarks[:, 42:48].mean(1), axis=-1)  # [T]
    spread = np.sqrt(((landmarks - landmarks.mean(1, keepdims=True)) ** 2).sum(-1).mean(-1))  # [T] RMS radius
    return (eyes < 1.0) | (spread < 2.0)


def eye_openness(lm: np.ndarray) -> np.ndarray:
    """landmarks [...,68,2] -> [...]: eye aspect ratio (two lid gaps over the corner distance), both eyes;
    NaN where a fit collapsed an eye (corners under a pixel apart, or an eye taller than it is wide), which
    would otherwise read as an eye thousands of times more open than any eye."""
    def ratio(eye: list[int]) -> np.ndarray:
        p = lm[..., eye, :]  # [...,6,2]
        lids = (np.linalg.norm(p[..., 1, :] - p[..., 5, :], axis=-1)
                + np.linalg.norm(p[..., 2, :] - p[..., 4, :], axis=-1))
        width = np.linalg.norm(p[..., 0, :] - p[..., 3, :], axis=-1)
        out = lids / np.maximum(2 * width, 1e-6)
        return np.where((width >= 1.0) & (out <= 1.0), out, np.nan)

    return (ratio(LEFT_EYE) + ratio(RIGHT_EYE)) / 2


def eye_line_roll(lm: np.ndarray) -> np.ndarray:
    """landmarks [...,68,2] -> [...]: the in-plane angle of the line through the eye centres, degrees,
    clockwise positive (the image's y axis points down)."""
    d = lm[..., RIGHT_EYE, :].mean(-2) - lm[..., LEFT_EYE, :].mean(-2)  # [...,2]
    return np.degrees(np.arctan2(d[..., 1], d[..., 0]))


def camera(size: tuple[int, int]) -> np.ndarray:
    """The pinhole camera assumed for a frame of ``size`` (H, W): focal length = the width, centred."""
    H, W = size
    return np.array([[W, 0, W / 2], [0, W, H / 2], [0, 0, 1]], np.float64)


def angles(rotation: np.ndarray) -> np.ndarray:
    """A rotation [3,3] of the face model into the camera -> (pitch, yaw, roll) degrees, with
    rotation = Rz(roll) Ry(yaw) Rx(pitch) in the camera's axes (x right, y down, z forward)."""
    return Rotation.from_matrix(rotation).as_euler("xyz", degrees=True)  # extrinsic x, y, z = pitch, yaw, roll


def rotation_of(pose: np.ndarray) -> np.ndarray:
    """(pitch, yaw, roll) degrees -> the rotation [3,3] that ``angles`` decomposes."""
    return Rotation.from_euler("xyz", pose, degrees=True).as_matrix()


def solve_pose(lm: np.ndarray, size: tuple[int, int], guess: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """landmarks [68,2] of a frame of ``size`` (H, W) -> ((pitch, yaw, roll) degrees, (rvec, tvec)) from
    a PnP fit of the rigid points of ``FACE_MODEL``. ``guess`` (the previous frame's rvec, tvec) starts the
    refinement; without one, or when the result's roll disagrees with the eye line, EPnP starts it."""
    if not np.isfinite(lm).all():
        return np.full(3, np.nan), None
    K = camera(size)
    model = FACE_MODEL[POSE_POINTS]  # [37,3]
    points = lm[POSE_POINTS].astype(np.float64)  # [37,2]

    def refine(rvec, tvec):
        rvec, tvec = cv2.solvePnPRefineLM(model, points, K, None, rvec.copy(), tvec.copy())
        return angles(cv2.Rodrigues(rvec)[0]), (rvec, tvec)

    check = float(eye_line_roll(lm))
    if guess is not None:
        pose, params = refine(*guess)
        if params[1][2, 0] > 0 and abs(_wrap(pose[2] - check)) <= ROLL_CHECK:
            return pose, params
    ok, rvec, tvec = cv2.solvePnP(model, points, K, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        return np.full(3, np.nan), None
    pose, params = refine(rvec, tvec)
    if params[1][2, 0] <= 0:  # behind the camera: no face fits
        return np.full(3, np.nan), None
    return pose, params


def _wrap(degrees: float) -> float:
    return (degrees + 180) % 360 - 180


def smooth(series: np.ndarray, kernel: np.ndarray = SMOOTH) -> np.ndarray:
    """Zero-phase filter of [T,...] along time within each run of finite frames (a gap is never bridged);
    at a run's ends the kernel is cut and renormalised, so nothing shifts in time."""
    out = np.array(series, np.float64)
    ok = np.isfinite(out.reshape(len(out), -1)).all(axis=1)
    half = len(kernel) // 2
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        run = out[a:b]
        total = np.zeros_like(run)
        weight = np.zeros((b - a,) + (1,) * (run.ndim - 1))
        for k, w in enumerate(kernel):
            s = k - half  # this tap reads frame t + s
            lo, hi = max(0, -s), min(b - a, b - a - s)
            total[lo:hi] += w * run[lo + s: hi + s]
            weight[lo:hi] += w
        out[a:b] = total / weight
    return out


def head_pose(lm: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """landmarks [68,2] of one frame of ``size`` (H, W) -> (pitch, yaw, roll) degrees, unsmoothed."""
    return solve_pose(lm, size)[0].astype(np.float32)


def _area(box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def overlap(a, b) -> float:
    """Intersection over union of two boxes."""
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def continues(candidate, box, *, min_overlap: float = 0.3, max_scale: float = 1.6) -> bool:
    """Whether a detection ``candidate`` is the same face as the tracked ``box``: they overlap and their
    sizes are within ``max_scale`` of each other."""
    ratio = np.sqrt(_area(candidate) / max(_area(box), 1e-6))
    return overlap(candidate, box) >= min_overlap and 1 / max_scale <= ratio <= max_scale


# a dlib detection box relative to its landmarks: centre offset and side, in units of the landmarks' RMS
# radius about their centroid (both rotation invariant); measured on detections, updated by each one
BOX_SIDE, BOX_OFFSET = 2.45, (0.0, -0.3)


def box_from_landmarks(lm: np.ndarray, side: float = BOX_SIDE, offset: tuple[float, float] = BOX_OFFSET):
    """The box a detection of this face would have, from its landmarks [68,2] (rotation invariant)."""
    centre = lm.mean(axis=0)
    radius = float(np.sqrt(((lm - centre) ** 2).sum(axis=1).mean()))
    cx, cy = centre + radius * np.asarray(offset)
    half = side * radius / 2
    return (cx - half, cy - half, cx + half, cy + half)


def _box_fit(box, lm: np.ndarray) -> tuple[float, tuple[float, float]]:
    """(side, offset) of ``box`` in units of the landmarks' radius: how box_from_landmarks reproduces it."""
    centre = lm.mean(axis=0)
    radius = max(float(np.sqrt(((lm - centre) ** 2).sum(axis=1).mean())), 1e-6)
    side = np.sqrt(_area(box)) / radius
    offset = ((box[0] + box[2]) / 2 - centre[0]) / radius, ((box[1] + box[3]) / 2 - centre[1]) / radius
    return float(side), (float(offset[0]), float(offset[1]))


def _jumped(new, old, *, max_shift: float = 0.25, max_scale: float = 1.25) -> bool:
    """Whether the landmark box moved by more than ``max_shift`` of its side or rescaled beyond
    ``max_scale`` in one frame (a face does not; a fit sliding off it does)."""
    side = np.sqrt(_area(old))
    shift = np.hypot((new[0] + new[2] - old[0] - old[2]) / 2, (new[1] + new[3] - old[1] - old[3]) / 2)
    ratio = np.sqrt(_area(new) / max(_area(old), 1e-6))
    return shift > max_shift * side or not 1 / max_scale <= ratio <= max_scale


class Tracker:
    """One person's face through a sequence of frames (see the module's docstring)."""

    def __init__(self, prior: Box | None = None, detect_every: int = 5, reacquire: int = 3) -> None:
        self.prior, self.detect_every, self.reacquire = prior, detect_every, reacquire
        self.box = None  # the box the next frame's landmarks are fitted in
        self.detected_once = False  # a real detection started the track (else it holds the prior box)
        self.supported = False  # the last detector run found the tracked face
        self.far: list = []  # the far detections of the detector runs since the track last had one
        self.calibration = (BOX_SIDE, BOX_OFFSET)

    def _choose(self, found: list[tuple[Box, float]], box) -> Box | None:
        """The detection that continues ``box`` (the best overlap), or None; records far ones."""
        near = [b for b, _ in found if continues(b, box)]
        if near:
            self.far = []
            return max(near, key=lambda b: overlap(b, box))
        best_far = max(found, key=lambda d: d[1])[0] if found else None
        self.far.append(best_far)
        same_place = (best_far is not None and len(self.far) >= self.reacquire
                      and all(f is not None and continues(f, best_far) for f in self.far[-self.reacquire:]))
        if same_place:
            self.far = []
            return best_far
        return None

    def step(self, frame: np.ndarray, t: int) -> tuple[np.ndarray | None, bool]:
        """Landmarks [68,2] of this frame (None when no face is tracked, or where the fit collapsed: see
        :func:`collapsed_fit`; the box then stays where the face was) and whether a detection backs them."""
        if not self.detected_once:  # no face detected yet: look on every detector frame, else hold the prior
            if self.box is None or t % self.detect_every == 0:
                found = detections(frame)
                if found:
                    near = [b for b, _ in found if self.box is not None and continues(b, self.box)]
                    return self._start(frame, near[0] if near else max(found, key=lambda d: _area(d[0]))[0]), True
            if self.box is None:
                if self.prior is None:
                    return None, False
                self.box = self.prior
            return _fit(frame, self.box), False
        lm = _fit(frame, self.box)
        if lm is None:
            self.supported = False
            return None, False
        carried = box_from_landmarks(lm, *self.calibration)
        jumped = _jumped(carried, self.box)
        if t % self.detect_every == 0 or jumped:
            hit = self._choose(detections(frame), self.box if jumped else carried)
            if hit is not None:
                return self._start(frame, hit), True
            self.supported = False
            if jumped:  # the fit slid off and no detection confirms the move: the box stays where the face was
                return lm, False
        self.box = carried
        return lm, self.supported

    def _start(self, frame: np.ndarray, box: Box) -> np.ndarray | None:
        """Take a detection: fit its landmarks [68,2] and learn how this detector's boxes sit on them (not
        from a collapsed fit: the box is taken, the calibration kept)."""
        lm = _fit(frame, box)
        if lm is not None:
            self.calibration = _box_fit(box, lm)
        self.box, self.supported, self.far, self.detected_once = box, lm is not None, [], True
        return lm


def _fit(frame: np.ndarray, box: Box) -> np.ndarray | None:
    """The landmarks [68,2] fitted in ``box``, or None where the fit collapsed (a frame without a face)."""
    lm = landmarks(frame, box)
    return None if collapsed_fit(lm[None])[0] else lm


class TrackBuilder:
    """A face track built one frame at a time (a video streamed, not held): ``add`` each frame uint8
    [H,W,3] in order, then ``finish``."""

    def __init__(self, size: tuple[int, int], *, prior: Box | None = None, detect_every: int = 5) -> None:
        self.size = size
        self.tracker = Tracker(prior, detect_every)
        self.lms, self.pose, self.boxes, self.found, self.detected = [], [], [], [], []
        self.guess = None

    def add(self, frame: np.ndarray) -> None:
        lm, backed = self.tracker.step(frame, len(self.found))
        if lm is None:
            self.guess = None
            self.lms.append(np.full((68, 2), np.nan, np.float32))
            self.pose.append(np.full(3, np.nan))
            self.boxes.append(np.full(4, np.nan, np.float32))
            self.found.append(False), self.detected.append(False)
            return
        pose, self.guess = solve_pose(lm, self.size, self.guess)
        self.lms.append(lm), self.pose.append(pose), self.found.append(True), self.detected.append(backed)
        self.boxes.append(np.array(box_from_landmarks(lm, *self.tracker.calibration), np.float32))

    def finish(self, smooth_pose: bool = True) -> FaceTrack:
        T = len(self.found)
        lms = np.array(self.lms, np.float32).reshape(T, 68, 2)  # [T,68,2]
        pose = np.array(self.pose, np.float64).reshape(T, 3)  # [T,3]
        if smooth_pose:
            pose = smooth(pose)
        with np.errstate(invalid="ignore"):
            return FaceTrack(lms, mouth_opening(lms).astype(np.float32), pose.astype(np.float32),
                             eye_openness(lms).astype(np.float32), np.array(self.found, bool),
                             np.array(self.detected, bool), np.array(self.boxes, np.float32).reshape(T, 4))


def track(frames: np.ndarray, *, prior: Box | None = None, detect_every: int = 5, smooth_pose: bool = True
          ) -> FaceTrack:
    """Face measurements of one person's frames uint8 [T,H,W,3]."""
    builder = TrackBuilder(frames.shape[1:3], prior=prior, detect_every=detect_every)
    for frame in frames:
        builder.add(frame)
    return builder.finish(smooth_pose)


__all__ = ["FaceTrack", "Tracker", "TrackBuilder", "track", "detect", "detections", "landmarks", "prior_box",
           "mouth_opening",
           "eye_openness", "eye_line_roll", "head_pose", "solve_pose", "smooth", "FACE_MODEL", "angles",
           "rotation_of", "camera", "box_from_landmarks", "continues", "overlap"]
