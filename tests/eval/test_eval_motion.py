"""Mouth opening and head nods measured back from pixels of the synthetic faces."""

import numpy as np

from dyadgen.data.faces import FaceLook, FacePose, draw_face
from dyadgen.eval import correlation, head_drop, mouth_opening
from dyadgen.media.crop import clip_box, crop_to_framing


def render(mouth: np.ndarray, nod: np.ndarray, seed: int) -> np.ndarray:
    """One person's frames cropped like the training data: uint8 [T,3,128,112]."""
    look = FaceLook.random(np.random.default_rng(seed))
    poses = [FacePose(mouth=float(m), nod=float(n)) for m, n in zip(mouth, nod, strict=True)]
    frames = [draw_face(look, pose, 160, 144) for pose in poses]
    box = clip_box(frames)
    return np.stack([crop_to_framing(f, box, (128, 112)) for f in frames]).transpose(0, 3, 1, 2)


def test_mouth_opening_follows_the_drawn_mouth_and_is_zero_when_closed():
    t = np.arange(60)
    mouth = np.where(t < 40, np.clip(np.sin(t / 3.0), 0, 1), 0.0)  # talks, then stays closed
    for seed in range(4):
        measured = mouth_opening(render(mouth, np.zeros(60), seed))
        assert correlation(measured[:40], mouth[:40]) > 0.9
        assert measured[40:].max() == 0.0
        assert measured[:40].max() > 0.03


def test_head_drop_follows_a_nod():
    nod = np.zeros(50)
    nod[20:35] = np.sin(np.pi * np.arange(15) / 15)
    for seed in range(3):
        drop = head_drop(render(np.zeros(50), nod, seed))
        assert correlation(drop, nod) > 0.8
        assert drop[:15].max() - drop[:15].min() <= 1  # still before the nod


def test_nods_expected_from_the_two_tracks_match_the_synthetic_ground_truth():
    from pathlib import Path

    from dyadgen.eval.talking import expected_nods, speech_envelope
    from dyadgen.io.audio import load_audio

    clip = Path(__file__).resolve().parents[1] / "fixtures" / "train_clip"  # 4 s of a synthetic dialogue
    truth = np.load(clip / "ground_truth.npz")
    T = truth["nod"].shape[1]
    env = [speech_envelope(load_audio(clip / f"{s}.wav"), T) for s in ("left", "right")]
    active = [e > 0.02 * e.max() for e in env]
    for p in range(2):
        nods = expected_nods(active[p], active[1 - p])
        if truth["nod"][p].any():
            assert correlation(nods, truth["nod"][p]) > 0.9  # the left person nods after the right one starts
        else:
            assert not nods.any()
    assert truth["nod"][0].any()


def test_motion_contrast_tells_a_talking_face_from_a_flickering_one():
    from dyadgen.eval.motion import motion_contrast

    t = np.arange(80)
    speaking = t < 40
    mouth = np.where(speaking, np.clip(np.sin(t / 2.0), 0, 1), 0.0)  # talks, then listens with a still face
    frames = render(mouth, np.zeros(80), 0)
    assert motion_contrast(frames, speaking, ~speaking) > 5  # moves far more while speaking
    noisy = frames.copy()  # the same face with blotches flickering in while it listens
    rng = np.random.default_rng(0)
    noisy[40:] = np.clip(noisy[40:].astype(int) + rng.integers(-60, 60, noisy[40:].shape), 0, 255).astype(np.uint8)
    assert motion_contrast(noisy, speaking, ~speaking) < 1
