"""Emotion in generated video, read from the face: a linear probe trained on ground-truth TRAINING windows
of a corpus with emotion labels (face features from the evaluation's own measurements) is applied to the
held-out windows of every system; and the same window generated under two different emotion labels shows
whether the emotion condition changes the generated expression at all.

    face features of a person's window [26] = mean and deviation over its frames of the expression
    (landmark-PCA, 10) and jaw (3) groups of dyadgen.eval.dyadic
    its label = the most frequent known emotion of the person's frames in the window (the label of their
    latest turn holds until their next one, as in training); a window-person without one is not scored
"""

from __future__ import annotations

import numpy as np

from dyadgen.data.emotions import EMOTIONS
from dyadgen.eval import dyadic

CONTRAST = ("Joy", "Anger")  # the two labels the condition check generates a window under
PROBE = ("emotion probe: a logistic regression (class-balanced, standardised features) on the mean and deviation of "
         "the expression and jaw features of ground-truth TRAINING windows, one sample per person and window, "
         "labelled by their majority emotion; applied to held-out windows of each system")
WAR = f"emotion WAR (accuracy) of the {PROBE}; the ground truth's is the probe's own ceiling"
UAR = f"emotion UAR (mean per-class recall) of the {PROBE}"
SHIFT = (f"emotion condition shift: distance between the face features of the same window generated under "
         f"{CONTRAST[0]} and under {CONTRAST[1]}, in units of the ground truth's per-feature deviation; 0 = the "
         "condition changes nothing")
HIT = (f"emotion condition hit rate: share of the two conditioned generations ({CONTRAST[0]}, {CONTRAST[1]}) that "
       "the probe reads as the label they were generated under")


def face_features(landmarks: np.ndarray, pose: np.ndarray, basis) -> np.ndarray | None:
    """One person's window -> [26] (None when fewer than 3 frames have a face)."""
    groups = dyadic.groups(landmarks, pose, basis)
    x = np.concatenate([groups["exp"], groups["jaw"]], axis=1)  # [T,13]
    x = x[np.isfinite(x).all(axis=1)]
    if len(x) < 3:
        return None
    return np.concatenate([x.mean(0), x.std(0)])


def window_label(emotion: np.ndarray) -> int:
    """The most frequent known label of a person's frames [T] (-1 when none is known)."""
    known = emotion[emotion >= 0]
    return int(np.bincount(known).argmax()) if known.size else -1


def fit(features: np.ndarray, labels: np.ndarray):
    """The probe on training features [n,26] with labels [n], or None with fewer than two classes."""
    from sklearn.linear_model import LogisticRegression  # optional (the eval extra): imported on first use
    from sklearn.pipeline import make_pipeline  # optional (the eval extra): imported on first use
    from sklearn.preprocessing import StandardScaler  # optional (the eval extra): imported on first use

    keep = labels >= 0
    if len(np.unique(labels[keep])) < 2:
        return None
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")).fit(
        features[keep], labels[keep])


def names(ids) -> list[str]:
    return [EMOTIONS[i] for i in ids]


__all__ = ["face_features", "window_label", "fit", "CONTRAST", "WAR", "UAR", "SHIFT", "HIT"]
