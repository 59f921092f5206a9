"""Procedural cartoon faces for the synthetic corpus, drawn with OpenCV.

A face is a :class:`FaceLook` (colours and proportions drawn once per person) rendered per frame
from a :class:`FacePose` (mouth opening, nod offset, blink, expression). The mouth's inside is
drawn near-black so its opening can be measured back from pixels (dyadgen.eval.motion.mouth_opening).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MOUTH_INSIDE = (20, 8, 12)  # RGB of the open mouth's inside: darker than anything else in a face


@dataclass
class FaceLook:
    background: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    eyes: tuple[int, int, int]
    lips: tuple[int, int, int]
    face_w: float  # face half-width as a fraction of the frame width
    face_h: float  # face half-height as a fraction of the frame height
    hair_style: int  # 0 short, 1 long, 2 bald with a beard line

    @classmethod
    def random(cls, rng: np.random.Generator) -> FaceLook:
        def colour(lo: int, hi: int) -> tuple[int, int, int]:
            return tuple(int(v) for v in rng.integers(lo, hi, 3))

        skin_base = rng.uniform(0.45, 0.95)
        skin = (int(255 * skin_base), int(200 * skin_base), int(160 * skin_base))
        return cls(background=colour(60, 200), skin=skin, hair=colour(30, 140), eyes=colour(30, 110),
                   lips=(int(rng.integers(150, 210)), int(rng.integers(50, 90)), int(rng.integers(60, 100))),
                   face_w=float(rng.uniform(0.27, 0.33)), face_h=float(rng.uniform(0.30, 0.35)),
                   hair_style=int(rng.integers(0, 3)))


@dataclass
class FacePose:
    mouth: float = 0.0  # 0 closed .. 1 wide open
    nod: float = 0.0  # 0 .. 1, the head moves down by up to 6 % of the frame height
    blink: bool = False
    smile: float = 0.0  # mouth curve -1 (down) .. 1 (up)
    brows: float = 0.0  # brow tilt -1 (frown) .. 1 (raised)

    @classmethod
    def random(cls, rng: np.random.Generator) -> FacePose:
        """Any pose: mouth opening and nod uniform, a blink one time in five, smile and brows uniform."""
        return cls(mouth=float(rng.uniform(0, 1)), nod=float(rng.uniform(0, 1)), blink=bool(rng.random() < 0.2),
                   smile=float(rng.uniform(-1, 1)), brows=float(rng.uniform(-1, 1)))


def draw_face(look: FaceLook, pose: FacePose, height: int, width: int) -> np.ndarray:
    """One frame uint8 [H,W,3] (RGB) of one person."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = look.background
    cx = width // 2
    cy = int(height * (0.52 + 0.06 * pose.nod))
    fw, fh = int(width * look.face_w), int(height * look.face_h)
    aa = cv2.LINE_AA
    if look.hair_style == 1:  # long hair behind the face
        cv2.ellipse(img, (cx, cy + fh // 4), (int(fw * 1.25), int(fh * 1.2)), 0, 0, 360, look.hair, -1, aa)
    cv2.ellipse(img, (cx, cy + int(fh * 1.6)), (int(fw * 1.6), int(fh * 0.8)), 0, 180, 360, look.hair, -1, aa)
    cv2.ellipse(img, (cx, cy), (fw, fh), 0, 0, 360, look.skin, -1, aa)
    if look.hair_style != 2:
        cv2.ellipse(img, (cx, cy - int(fh * 0.55)), (int(fw * 1.02), int(fh * 0.5)), 0, 180, 360, look.hair, -1, aa)
    # eyes and brows
    ey = cy - int(fh * 0.18)
    ex = int(fw * 0.42)
    er = max(2, int(fw * 0.13))
    for side in (-1, 1):
        x = cx + side * ex
        cv2.ellipse(img, (x, ey), (int(er * 1.5), er), 0, 0, 360, (245, 245, 245), -1, aa)
        if pose.blink:
            cv2.ellipse(img, (x, ey), (int(er * 1.6), er + 1), 0, 0, 360, look.skin, -1, aa)
            cv2.line(img, (x - int(er * 1.5), ey), (x + int(er * 1.5), ey), (60, 40, 40), 1, aa)
        else:
            cv2.circle(img, (x, ey), max(1, int(er * 0.75)), look.eyes, -1, aa)
        by = ey - int(er * 1.9) - int(pose.brows * er * 0.6)
        tilt = int(pose.brows * er * 0.5) * side
        cv2.line(img, (x - int(er * 1.6), by + tilt), (x + int(er * 1.6), by - tilt), look.hair, 2, aa)
    # nose
    cv2.line(img, (cx, ey + er), (cx - 2, cy + int(fh * 0.2)), tuple(int(v * 0.8) for v in look.skin), 1, aa)
    # mouth: lips outline plus a dark inside whose height follows the opening
    my = cy + int(fh * 0.5)
    mw = int(fw * 0.45)
    open_h = int(round(pose.mouth * fh * 0.28))
    if open_h >= 1:
        cv2.ellipse(img, (cx, my), (mw, open_h + 2), 0, 0, 360, look.lips, -1, aa)
        cv2.ellipse(img, (cx, my), (mw - 3, open_h), 0, 0, 360, MOUTH_INSIDE, -1, aa)
    else:
        curve = int(pose.smile * fh * 0.08)
        pts = np.array([[cx - mw, my - curve], [cx, my + curve], [cx + mw, my - curve]], np.int32)
        cv2.polylines(img, [pts], False, look.lips, 2, aa)
    if look.hair_style == 2:
        cv2.ellipse(img, (cx, cy + int(fh * 0.75)), (int(fw * 0.6), int(fh * 0.25)), 0, 0, 180, look.hair, 2, aa)
    return img
