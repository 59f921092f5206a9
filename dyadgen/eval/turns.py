"""Turn-taking, measured per person from the mouth and head of their frames and the two tracks.

Each frame of a person has a role from the corpus's turn timeline: speaking (their own turn, overlap
included), listening (only the partner speaks) or silent (neither). The threshold for an open mouth is
the person's own: their closed baseline (median ground-truth opening when not speaking) plus 30 % of
their ground-truth speaking range, the same threshold for every system scored against that person.
"""

from __future__ import annotations

import numpy as np

from dyadgen.clock import FPS
from dyadgen.eval.stats import pearson

FALSE_TALK = ("false-talk rate: share of the frames where only the partner speaks in which the mouth is "
              "open above the person's closed baseline; lower is better (ground truth: real backchannels)")
SILENT_OPEN = "share of the frames where both are silent in which the mouth is open; lower is better"
SYNCHRONY = ("speaker-listener synchrony: peak time-lagged cross-correlation (within +-2 s) of the "
             "partner's speech energy with the person's head motion, over the frames they listen")
SYNCHRONY_GAP = "|synchrony of generated - synchrony of ground truth|; lower is better"
MAX_LAG = 2 * FPS
MIN_MARGIN = 0.05  # mouth-opening units (gap over width): below this a range is landmark noise


def roles(speaking: np.ndarray) -> dict[str, np.ndarray]:
    """speaking bool [P,T] -> role masks bool [P,T]: speaking, listening, silent."""
    partner = speaking[::-1]
    return {"speaking": speaking, "listening": ~speaking & partner, "silent": ~speaking & ~partner}


def open_threshold(truth_mouth: np.ndarray, speaks: np.ndarray) -> float | None:
    """The person's open-mouth threshold from their ground-truth mouth opening [T]."""
    quiet, talk = truth_mouth[~speaks & np.isfinite(truth_mouth)], truth_mouth[speaks & np.isfinite(truth_mouth)]
    if quiet.size == 0:
        return None
    closed = float(np.median(quiet))
    span = float(np.percentile(talk, 90)) - closed if talk.size else 0.0
    return closed + max(0.3 * span, MIN_MARGIN)


def open_rate(mouth: np.ndarray, mask: np.ndarray, threshold: float | None) -> float | None:
    keep = mask & np.isfinite(mouth)
    if threshold is None or not keep.any():
        return None
    return float((mouth[keep] > threshold).mean())


def head_motion(pose: np.ndarray) -> np.ndarray:
    """head pose [T,3] degrees -> speed [T] (degrees per frame, 0 at the first frame)."""
    speed = np.linalg.norm(np.diff(pose, axis=0), axis=1)
    return np.concatenate([[0.0], speed])


def synchrony(partner_energy: np.ndarray, motion: np.ndarray, listens: np.ndarray,
              max_lag: int = MAX_LAG) -> float | None:
    """Peak over lags 0..max_lag of corr(energy[t], motion[t + lag]) on listening frames t (the listener
    reacts after the speaker; negative lags would be the listener anticipating, kept within +-max_lag)."""
    T = len(motion)
    best = None
    for lag in range(-max_lag, max_lag + 1):
        t = np.flatnonzero(listens)
        t = t[(t + lag >= 0) & (t + lag < T)]
        r = pearson(partner_energy[t], motion[t + lag])
        if r is not None and (best is None or r > best):
            best = r
    return best
