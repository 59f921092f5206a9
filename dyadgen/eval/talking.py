"""Score generated frames of a dialogue for talking and listening against the audio or ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dyadgen.clock import SAMPLES_PER_FRAME
from dyadgen.data.synthetic import NOD_FRAMES, NOD_LAG
from dyadgen.eval.motion import correlation, head_drop, mouth_opening


def speech_envelope(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """Per-frame RMS of a 16 kHz track, smoothed over 3 frames: float [T] (how far the mouth should open)."""
    audio = np.pad(audio, (0, max(0, num_frames * SAMPLES_PER_FRAME - len(audio))))
    frames = audio[: num_frames * SAMPLES_PER_FRAME].reshape(num_frames, SAMPLES_PER_FRAME)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(-1))
    return np.convolve(rms, np.ones(3) / 3, mode="same")


def turn_starts(active: np.ndarray, min_silence: int = 12) -> np.ndarray:
    """Frames where speech starts after at least ``min_silence`` silent frames (0.5 s): a new turn, not a
    pause inside one. Speech at the very start of a clip may continue a turn begun before it, so it
    counts only after ``min_silence`` frames were seen. active bool [T] -> int frame indices."""
    starts, silent = [], 0
    for t, on in enumerate(active):
        if on and silent >= min_silence:
            starts.append(t)
        silent = 0 if on else silent + 1
    return np.array(starts, dtype=np.int64)


def expected_nods(own_active: np.ndarray, partner_active: np.ndarray) -> np.ndarray:
    """The synthetic corpus's listening rule applied to two tracks: a nod (a sine bump of NOD_FRAMES frames)
    NOD_LAG frames after each turn start of the partner, none while the person speaks. bool [T] each -> [T]."""
    T = len(own_active)
    nod = np.zeros(T, np.float32)
    for t0 in turn_starts(partner_active) + NOD_LAG:
        t1 = min(T, t0 + NOD_FRAMES)
        if t1 > t0:
            nod[t0:t1] = np.maximum(nod[t0:t1], np.sin(np.pi * np.arange(t1 - t0) / NOD_FRAMES))
    nod[own_active] = 0.0
    return nod


@dataclass
class TalkingScore:
    mouth_corr: float  # correlation of mouth opening with the person's speech envelope, frames where they speak
    open_speaking: float  # mean mouth opening while the person speaks
    open_listening: float  # mean mouth opening while only the partner speaks
    nod_corr: float  # correlation of the head's drop with the nods expected after the partner's turn starts


def score_person(frames: np.ndarray, own: np.ndarray, partner: np.ndarray, threshold: float = 0.02) -> TalkingScore:
    """frames uint8 [T,H,W,3] of one person; own/partner speech envelopes [T]."""
    pixels = frames.transpose(0, 3, 1, 2)  # [T,3,H,W]
    mouth, drop = mouth_opening(pixels), head_drop(pixels)
    speaks = own > threshold * own.max()
    partner_speaks = partner > threshold * partner.max()
    listens = ~speaks & partner_speaks
    nods = expected_nods(speaks, partner_speaks)
    return TalkingScore(correlation(mouth[speaks], own[speaks]), float(mouth[speaks].mean()),
                        float(mouth[listens].mean()) if listens.any() else 0.0,
                        correlation(drop[~speaks], nods[~speaks]) if (~speaks).any() else 0.0)


def score_against_truth(frames: np.ndarray, truth: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """Generated frames uint8 [P,T,H,W,3] of a synthetic dialogue vs its ground_truth.npz arrays
    ([P,T] each): one dict of scores per person."""
    T = min(frames.shape[1], truth["mouth"].shape[1])
    out = []
    for p in range(2):
        pixels = frames[p, :T].transpose(0, 3, 1, 2)  # [T,3,H,W]
        mouth, drop = mouth_opening(pixels), head_drop(pixels)
        speaks = truth["speaking"][p, :T].astype(bool)
        listens = ~speaks & truth["speaking"][1 - p, :T].astype(bool)
        out.append({
            "mouth_corr": correlation(mouth[speaks], truth["mouth"][p, :T][speaks]) if speaks.any() else 0.0,
            "open_speaking": float(mouth[speaks].mean()) if speaks.any() else 0.0,
            "open_listening": float(mouth[listens].mean()) if listens.any() else 0.0,
            "nod_corr": correlation(drop[~speaks], truth["nod"][p, :T][~speaks]) if (~speaks).any() else 0.0,
        })
    return out
