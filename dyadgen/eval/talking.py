"""Score generated frames of a dialogue for talking and listening against the audio or ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dyadgen.clock import SAMPLES_PER_FRAME
from dyadgen.eval.motion import correlation, mouth_opening


def speech_envelope(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """Per-frame RMS of a 16 kHz track, smoothed over 3 frames: float [T] (how far the mouth should open)."""
    audio = np.pad(audio, (0, max(0, num_frames * SAMPLES_PER_FRAME - len(audio))))
    frames = audio[: num_frames * SAMPLES_PER_FRAME].reshape(num_frames, SAMPLES_PER_FRAME)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(-1))
    return np.convolve(rms, np.ones(3) / 3, mode="same")


@dataclass
class TalkingScore:
    mouth_corr: float  # correlation of mouth opening with the person's speech envelope, frames where they speak
    open_speaking: float  # mean mouth opening while the person speaks
    open_listening: float  # mean mouth opening while only the partner speaks


def score_person(frames: np.ndarray, own: np.ndarray, partner: np.ndarray, threshold: float = 0.02) -> TalkingScore:
    """frames uint8 [T,H,W,3] of one person; own/partner speech envelopes [T]."""
    mouth = mouth_opening(frames.transpose(0, 3, 1, 2))
    speaks = own > threshold * own.max()
    listens = ~speaks & (partner > threshold * partner.max())
    return TalkingScore(correlation(mouth[speaks], own[speaks]), float(mouth[speaks].mean()),
                        float(mouth[listens].mean()) if listens.any() else 0.0)


def score_against_truth(frames: np.ndarray, truth: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """Generated frames uint8 [P,T,H,W,3] of a synthetic dialogue vs its ground_truth.npz arrays
    ([P,T] each): one dict of scores per person."""
    from dyadgen.eval.motion import head_drop

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
