"""Listener and dyadic motion by the published protocols, per feature group as their tables report it:

    expression [T,K]  landmark-PCA coefficients (K = 10), fitted on ground truth of TRAINING windows
    jaw        [T,3]  mouth opening (inner-lip gap / mouth width), mouth width and jaw drop (nose tip to chin),
                      both over the eye distance
    pose       [T,3]  head pitch, yaw, roll in degrees (dyadgen.eval.face)

DualTalk (ZiqiaoPeng/DualTalk, metric/metric.py) and DIM (Boese0601/Dyadic-Interaction-Modeling,
code/metrics/eval_utils.py) score FLAME fits: 50 expression coefficients, 3 jaw-pose and 3 head-pose angles.
DyadGen measures video with 2-D landmarks, so the groups and formulas are theirs while the features are
not: no figure here is the number their tables would print for the same video, but each follows its
formula exactly, and a system is ranked by it as theirs would rank it.

Per clip and group, averaged over clips (DualTalk's per-sequence protocol, which DIM's FD and P-FD share):
FD, P-FD, MSE, Var, Div, rPCC. Pooled over every clip (DIM's protocol): SID.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dyadgen.eval import face
from dyadgen.eval.frechet import frechet_between

GROUPS = ("exp", "jaw", "pose")
COMPONENTS = 10  # expression PCA components
SID_CLUSTERS = {"exp": 40, "jaw": 10, "pose": 20}  # DIM: 40 expression, 20 pose; jaw: DualTalk's 10
PAIRS = 100  # DualTalk's diversity: two draws of 100 frames without replacement
FEATURES = ("expression = landmark-PCA coefficients (10), jaw = mouth opening, mouth width and jaw drop, pose = "
            "pitch/yaw/roll in degrees, from dlib's 2-D landmarks, where the reference scores FLAME coefficients")
DUALTALK = "ZiqiaoPeng/DualTalk metric/metric.py"
DIM = "Boese0601/Dyadic-Interaction-Modeling code/metrics/eval_utils.py"

DEFINITIONS = {
    "fd": ("FD: Frechet distance of the Gaussians of the clip's generated and ground-truth frames, per clip, mean "
           "over clips; lower is better", DUALTALK),
    "p_fd": ("P-FD: Frechet distance of [partner ground truth, person] concatenated per frame, generated vs "
             "ground truth, per clip; lower is better", DUALTALK),
    "mse": ("MSE: mean squared difference of generated and ground-truth features, per clip; lower is better",
            DUALTALK),
    "variance": ("Var: per-feature variance over the clip's frames (ddof 0), mean over features, per clip; closer "
                 "to ground truth is better", DUALTALK),
    "diversity": ("Div: mean L2 distance between two independent draws of 100 of the clip's frames (without "
                  "replacement; clips of 100 frames or fewer have none), fresh draws in every clip from one seeded "
                  "generator; closer to ground truth is better", DUALTALK + " (which seeds nothing; here seed 0)"),
    "rpcc": ("rPCC: |PCC(ground truth, partner) - PCC(generated, partner)|, features flattened over the clip's "
             "frames, per clip; lower is better", DUALTALK + " (DIM pools the clips)"),
    "sid": ("SID: Shannon index (log2, +1e-6) of the histogram of ALL clips' frames over k-means clusters "
            "(random_state 0) fitted on all ground-truth frames, k = 40 expression, 10 jaw, 20 pose; closer to "
            "ground truth is better", DIM + " (k for jaw from DualTalk: DIM folds the jaw into its 6-d pose)"),
}


@dataclass
class MotionBasis:
    """The expression PCA, fitted on ground truth."""

    mean_shape: np.ndarray  # [136]
    components: np.ndarray  # [K,136]

    def save(self, path) -> None:
        np.savez(path, mean_shape=self.mean_shape, components=self.components)

    @classmethod
    def load(cls, path) -> MotionBasis:
        with np.load(path) as z:
            return cls(z["mean_shape"], z["components"])


def _eye_distance(landmarks: np.ndarray) -> np.ndarray:
    return np.maximum(np.linalg.norm(landmarks[:, 36:42].mean(1) - landmarks[:, 42:48].mean(1), axis=-1), 1e-6)


def normalised_shapes(landmarks: np.ndarray) -> np.ndarray:
    """landmarks [T,68,2] -> [T,136]: centred on their mean, turned so the eye line is level, divided by
    the eye distance (so they describe expression, not position, size or roll)."""
    angle = np.radians(face.eye_line_roll(landmarks))  # [T]
    c, s = np.cos(-angle), np.sin(-angle)
    level = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # [T,2,2] rotations by -roll
    centred = landmarks - landmarks.mean(axis=1, keepdims=True)  # [T,68,2]
    turned = np.einsum("tij,tpj->tpi", level, centred)
    return (turned / _eye_distance(landmarks)[:, None, None]).reshape(len(landmarks), -1)  # [T,136]


def jaw_features(landmarks: np.ndarray) -> np.ndarray:
    """landmarks [T,68,2] -> [T,3]: mouth opening, mouth width / eye distance, nose tip to chin / eye distance."""
    eyes = _eye_distance(landmarks)
    width = np.linalg.norm(landmarks[:, face.MOUTH_LEFT] - landmarks[:, face.MOUTH_RIGHT], axis=-1) / eyes
    drop = np.linalg.norm(landmarks[:, face.CHIN] - landmarks[:, face.NOSE_TIP], axis=-1) / eyes
    return np.stack([face.mouth_opening(landmarks), width, drop], axis=1)


def fit_basis(landmarks: list[np.ndarray], components: int = COMPONENTS) -> MotionBasis:
    """The expression PCA of ground-truth training landmarks (a list of [T,68,2], NaN where no face)."""
    from sklearn.decomposition import PCA  # optional (the eval extra): imported on first use

    shapes = np.concatenate([normalised_shapes(lm) for lm in landmarks])  # [N,136]
    shapes = shapes[np.isfinite(shapes).all(axis=1)]
    if len(shapes) <= components:
        raise ValueError(f"{len(shapes)} ground-truth frames with a face: too few to fit the motion basis")
    pca = PCA(n_components=components, random_state=0).fit(shapes)
    return MotionBasis(pca.mean_, pca.components_)


def groups(landmarks: np.ndarray, pose: np.ndarray, basis: MotionBasis) -> dict[str, np.ndarray]:
    """One person's landmarks [T,68,2] and head pose [T,3] -> {group: features [T,D]} (NaN rows: no face)."""
    with np.errstate(invalid="ignore"):
        expression = (normalised_shapes(landmarks) - basis.mean_shape) @ basis.components.T  # [T,K]
        pose = np.where(np.isnan(landmarks).any(axis=(1, 2))[:, None], np.nan, np.asarray(pose, np.float64))
        return {"exp": expression, "jaw": jaw_features(landmarks), "pose": pose}


def _finite(x: np.ndarray) -> np.ndarray:
    return np.isfinite(x).all(axis=1)


def variance(x: np.ndarray) -> float | None:
    x = x[_finite(x)]
    return float(np.var(x, axis=0).mean()) if len(x) > 1 else None


def diversity(x: np.ndarray, rng: np.random.Generator, pairs: int = PAIRS) -> float | None:
    """Mean distance of two independent draws of ``pairs`` frames without replacement (None when the clip
    has no more than ``pairs`` frames, where DualTalk's assertion stops)."""
    x = x[_finite(x)]
    if len(x) <= pairs:
        return None
    a, b = rng.choice(len(x), pairs, replace=False), rng.choice(len(x), pairs, replace=False)
    return float(np.linalg.norm(x[a] - x[b], axis=1).mean())


def clip_scores(generated: np.ndarray, truth: np.ndarray, partner: np.ndarray) -> dict[str, float | None]:
    """FD, P-FD, MSE and rPCC of one group of a person's generated features [T,D] against their ground
    truth [T,D], with the partner's ground truth [T,D], on the frames where all three have a face."""
    keep = _finite(generated) & _finite(truth) & _finite(partner)
    g, t, q = generated[keep], truth[keep], partner[keep]
    if len(g) < 3:
        return {"fd": None, "p_fd": None, "mse": None, "rpcc": None}
    pcc_true = _pcc(t.reshape(-1), q.reshape(-1))
    pcc_gen = _pcc(g.reshape(-1), q.reshape(-1))
    return {"fd": frechet_between(g, t),
            "p_fd": frechet_between(np.concatenate([q, g], 1), np.concatenate([q, t], 1)),
            "mse": float(np.mean((g - t) ** 2)),
            "rpcc": None if pcc_true is None else float(abs(pcc_true - (pcc_gen or 0.0)))}


def _pcc(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.std() < 1e-12 or b.std() < 1e-12:
        return None  # np.corrcoef would give NaN; a constant generated series correlates 0
    return float(np.corrcoef(a, b)[0, 1])


def fit_clusters(truth: list[np.ndarray], clusters: int):
    """k-means on all ground-truth frames of one group (DIM's pooled fit, random_state 0)."""
    from sklearn.cluster import KMeans  # optional (the eval extra): imported on first use

    x = np.concatenate([t[_finite(t)] for t in truth])
    return KMeans(n_clusters=min(clusters, len(x)), random_state=0, n_init="auto").fit(x)


def cluster_counts(x: np.ndarray, kmeans) -> np.ndarray:
    """How many of a clip's frames [T,D] fall in each cluster -> [k] (pooled over clips by summing)."""
    x = x[_finite(x)]
    if len(x) == 0:
        return np.zeros(kmeans.n_clusters, np.int64)
    return np.bincount(kmeans.predict(x), minlength=kmeans.n_clusters)


def shannon_index(counts: np.ndarray) -> float | None:
    """DIM's SID of a (pooled) cluster histogram: -sum p log2(p + 1e-6)."""
    counts = np.asarray(counts, np.float64)
    if counts.sum() == 0:
        return None
    p = counts / counts.sum()
    return float(-(p * np.log2(p + 1e-6)).sum())


__all__ = ["GROUPS", "MotionBasis", "fit_basis", "groups", "clip_scores", "variance", "diversity", "fit_clusters",
           "cluster_counts", "shannon_index", "DEFINITIONS", "FEATURES"]
