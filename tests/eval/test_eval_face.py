"""The face tracker and head pose: a projected 3-D face under known angles, and a real photo (scikit-image's
astronaut) opened at the mouth, rolled in the image plane, with distractors beside the face, and held still
with sensor noise. Roll, pitch and yaw follow what was done to the picture; the track stays on the face."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("dlib")
skimage_data = pytest.importorskip("skimage.data")

from dyadgen.eval import face  # noqa: E402

CROP = (slice(40, 220), slice(120, 320))  # the astronaut's head and shoulders


@pytest.fixture(scope="module")
def photo():
    image = skimage_data.astronaut()  # uint8 [512,512,3]
    box = face.detect(image)
    assert box is not None
    return image, face.landmarks(image, box)


@pytest.fixture(scope="module")
def mirrored():
    """The astronaut mirrored (how the tracker's failure was first seen), with her face box and nose tip."""
    image = np.ascontiguousarray(skimage_data.astronaut()[:, ::-1])
    box = face.detect(image)
    return image, box, face.landmarks(image, box)[face.NOSE_TIP]


def open_mouth(image: np.ndarray, lm: np.ndarray, pixels: int) -> np.ndarray:
    """Push the lower lip and chin down by ``pixels``, the gap painted as the inside of a mouth."""
    out = image.copy()
    if pixels == 0:
        return out
    top, bottom = int(lm[face.INNER_TOP, 1].mean()), int(lm[face.CHIN, 1])
    x0, x1 = int(lm[face.MOUTH_LEFT, 0]) - 4, int(lm[face.MOUTH_RIGHT, 0]) + 4
    region = image[top:bottom, x0:x1]
    out[top:bottom, x0:x1] = cv2.resize(region, (x1 - x0, region.shape[0] + pixels))[: region.shape[0]]
    out[top: top + pixels, int(lm[60, 0]): int(lm[64, 0])] = (40, 10, 15)
    return out


def turn(image: np.ndarray, clockwise: float) -> tuple[np.ndarray, np.ndarray]:
    """The image rotated clockwise (in the picture) about its centre, and the 2x3 matrix that did it."""
    H, W = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((W / 2, H / 2), -clockwise, 1.0)
    return cv2.warpAffine(image, matrix, (W, H), borderMode=cv2.BORDER_REFLECT), matrix


def project(pose_degrees, size=(480, 480), distance=700.0) -> np.ndarray:
    """FACE_MODEL turned by (pitch, yaw, roll), 700 mm in front of the frame's camera -> landmarks [68,2]."""
    points = face.FACE_MODEL @ face.rotation_of(pose_degrees).T + np.array([0.0, 0.0, distance])  # [68,3]
    pixels = points @ face.camera(size).T
    return (pixels[:, :2] / pixels[:, 2:]).astype(np.float32)


def test_pose_of_a_projected_face_is_recovered():
    rng = np.random.default_rng(0)
    poses = np.concatenate([rng.uniform(-30, 30, (40, 3)), np.eye(3) * 30, np.eye(3) * -30, np.zeros((1, 3))])
    errors = [np.abs(face.solve_pose(project(p), (480, 480))[0] - p).max() for p in poses]
    assert max(errors) < 2.0  # measured 1e-5: the solver's own model, exact points
    # the signs: looking down (a nod) brings the nose tip down towards the mouth, relative to the eyes
    def nose_below_eyes(lm):
        return lm[face.NOSE_TIP, 1] - lm[36:48, 1].mean()

    assert nose_below_eyes(project((15, 0, 0))) > nose_below_eyes(project((0, 0, 0)))
    assert face.solve_pose(project((0, 0, 10)), (480, 480))[0][2] == pytest.approx(10, abs=0.01)
    assert face.eye_line_roll(project((0, 0, 10))) == pytest.approx(10, abs=0.5)  # clockwise, both ways


def test_smoothing_keeps_a_nod_on_its_frame():
    t = np.arange(60)
    nod = 12 * np.exp(-0.5 * ((t - 30) / 3.0) ** 2)  # a nod of 12 degrees, about a quarter second wide
    lms = np.stack([project((p, 0, 0)) for p in nod])
    lms += np.random.default_rng(1).normal(0, 0.4, lms.shape).astype(np.float32)  # landmark jitter
    raw = np.stack([face.solve_pose(lm, (480, 480))[0] for lm in lms])
    smoothed = face.smooth(raw)
    assert abs(int(smoothed[:, 0].argmax()) - 30) <= 1
    assert smoothed[:, 0].max() > 10  # not flattened
    assert np.abs(smoothed[:, 0] - nod).std() < np.abs(raw[:, 0] - nod).std()  # the jitter is reduced


def test_mouth_opening_follows_the_opened_mouth_and_leaves_the_pose(photo):
    image, lm = photo
    amounts = [0, 3, 6, 9, 12, 9, 6, 3, 0, 12]
    track = face.track(np.stack([open_mouth(image, lm, a)[CROP] for a in amounts]))
    assert track.found.all() and track.detected.all()
    assert np.corrcoef(track.mouth_opening, amounts)[0, 1] > 0.9  # measured 0.96
    assert track.mouth_opening[4] > track.mouth_opening[0] + 0.1  # wide open vs closed
    assert np.ptp(track.head_pose[:, 0]) < 3  # speaking is not nodding: pitch holds (measured 1.3 degrees)


def test_roll_follows_the_rotation_and_pitch_and_yaw_hold(mirrored):
    image, box, nose = mirrored
    degrees = np.arange(-15, 16, 1.0)
    frames = np.stack([turn(image, d)[0] for d in degrees])
    for order in (1, -1):  # turning either way: each pass starts at one end
        track = face.track(frames[::order])
        pose = track.head_pose[::order]
        assert track.found.all()
        roll = pose[:, 2]
        assert np.corrcoef(roll, degrees)[0, 1] > 0.99  # measured 0.9998
        assert abs(np.polyfit(degrees, roll, 1)[0] - 1) < 0.1  # measured 0.996-0.999
        zero = int(np.flatnonzero(degrees == 0)[0])
        assert np.abs(pose[:, :2] - pose[zero, :2]).max() < 3  # measured 1.9 (pitch), 0.7 (yaw)
        assert np.all(track.eye_openness > 0.2)  # the eyes stay open


def test_the_track_stays_on_the_face_beside_distractors(mirrored):
    image, box, nose = mirrored
    scene = image.copy()
    x0, y0, x1, y1 = box
    small = cv2.resize(image[y0 - 20: y1 + 20, x0 - 20: x1 + 20], None, fx=0.6, fy=0.6)  # a second, smaller face
    scene[380: 380 + small.shape[0], 20: 20 + small.shape[1]] = small
    for r, colour in ((60, (230, 230, 240)), (45, (40, 60, 160)), (28, (220, 180, 40)), (12, (20, 20, 20))):
        cv2.circle(scene, (140, 200), r, colour, -1)  # a round patch with rings, beside the face
    degrees = np.arange(-15, 16, 1.0)
    turned = [turn(scene, d) for d in degrees]
    side = x1 - x0
    for order in (1, -1):
        track = face.track(np.stack([f for f, _ in turned])[::order])
        assert track.found.all()
        for (_, matrix), lm in zip(turned[::order], track.landmarks, strict=True):
            true_nose = matrix @ np.array([*nose, 1.0])
            assert np.linalg.norm(lm[face.NOSE_TIP] - true_nose) < 0.15 * side


def test_pose_holds_on_a_still_face_with_sensor_noise(photo):
    image, _ = photo
    rng = np.random.default_rng(2)
    still = image[CROP].astype(np.float32)
    frames = np.stack([np.clip(still + rng.normal(0, 3, still.shape), 0, 255).astype(np.uint8) for _ in range(30)])
    track = face.track(frames)
    assert track.found.all()
    assert track.head_pose.std(axis=0).max() < 0.5


def test_no_face_is_reported_not_invented():
    blank = np.full((5, 96, 96, 3), 128, np.uint8)
    track = face.track(blank)
    assert not track.found.any() and np.isnan(track.mouth_opening).all()
    track = face.track(blank, prior=face.prior_box((96, 96)))  # the crop rule's box: fitted, but not detected
    assert track.found.all() and not track.detected.any()


def test_a_collapsed_fit_is_a_frame_without_a_face_and_the_track_goes_on(photo, monkeypatch):
    """dlib's fit can collapse to a point on a smeared face (seen on a generated listener): that frame is
    reported without a face (no mouth opening, no pose, no box), and the frames after it keep the face."""
    image, _ = photo
    frames = np.stack([image[CROP]] * 12)
    frames[6] = 0  # the frame whose fit will collapse (marked so the patched fit can tell it)
    fit = face.landmarks

    def collapsing(frame, box):
        lm = fit(frame if frame.any() else frames[0], box)
        return lm.mean(0) + (lm - lm.mean(0)) * 0.01 if not frame.any() else lm  # all 68 points within a pixel

    monkeypatch.setattr(face, "landmarks", collapsing)
    track = face.track(frames)
    assert track.found.tolist() == [t != 6 for t in range(12)]
    assert np.isnan(track.mouth_opening[6]) and np.isnan(track.head_pose[6]).all() and np.isnan(track.boxes[6]).all()
    assert np.allclose(track.landmarks[7], track.landmarks[5], atol=0.5)  # the same face, in the same place
    assert np.isfinite(track.mouth_opening[[5, 7]]).all()
