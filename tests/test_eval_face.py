"""The face tracker on a real photo (scikit-image's astronaut): clips in which the mouth is opened and
the head turned programmatically; the measured mouth opening and roll follow what was done."""

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


def rotate(image: np.ndarray, lm: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate counter-clockwise about the nose tip."""
    matrix = cv2.getRotationMatrix2D(tuple(map(float, lm[face.NOSE_TIP])), degrees, 1.0)
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def test_mouth_opening_follows_the_opened_mouth(photo):
    image, lm = photo
    amounts = [0, 3, 6, 9, 12, 9, 6, 3, 0, 12]
    track = face.track(np.stack([open_mouth(image, lm, a)[CROP] for a in amounts]))
    assert track.found.all() and track.detected.all()
    assert np.corrcoef(track.mouth_opening, amounts)[0, 1] > 0.9  # measured 0.96
    assert track.mouth_opening[4] > track.mouth_opening[0] + 0.1  # wide open vs closed


def test_roll_follows_the_rotation(photo):
    image, lm = photo
    degrees = [-15, -10, -5, 0, 5, 10, 15]
    track = face.track(np.stack([rotate(image, lm, d)[CROP] for d in degrees]))
    roll = track.head_pose[:, 2]
    assert np.corrcoef(roll, degrees)[0, 1] < -0.99  # counter-clockwise in the image = negative roll; measured -0.9999
    assert abs((roll[-1] - roll[0]) - (-30)) < 8  # the span of the rotation, in degrees
    assert np.all(track.eye_openness > 0.2)  # the eyes stay open


def test_no_face_is_reported_not_invented():
    blank = np.full((5, 96, 96, 3), 128, np.uint8)
    track = face.track(blank)
    assert not track.found.any() and np.isnan(track.mouth_opening).all()
    track = face.track(blank, prior=face.prior_box((96, 96)))  # the crop rule's box: fitted, but not detected
    assert track.found.all() and not track.detected.any()
