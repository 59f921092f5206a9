"""Listener and dyadic motion as the DualTalk protocol scores it (metric/metric.py of DualTalk, after
DIM's eval_utils), on per-frame motion coefficients measured from video instead of FLAME fits:

    coefficients [T,F] = head pose (3) | mouth opening | eye openness | landmark-PCA expression (K)

The PCA is fitted on ground-truth landmarks of TRAINING clips (centred on the face, scaled by the eye
distance, so it describes expression, not position); every coefficient is standardised with the
ground-truth mean and deviation so that no unit dominates. Each metric is computed per person and clip
(DualTalk's per-sequence protocol) and averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dyadgen.eval.frechet import frechet_between

FD = "FD: Frechet distance of the frames' motion coefficients, generated vs ground truth; lower is better"
P_FD = ("P-FD: Frechet distance of [partner, person] coefficients concatenated per frame, generated "
        "person vs ground-truth person (partner always ground truth); lower is better")
VARIANCE = "Var: variance over time of each coefficient, averaged over coefficients; closer to ground truth is better"
DIVERSITY = "Div: mean L2 distance between 100 random frame pairs of the clip (fixed seed); closer to ground truth"
SID = ("SID: Shannon index (log2) of the frames' cluster histogram, k-means (k=20) fitted on all held-out "
       "ground-truth frames; higher is more diverse, closer to ground truth is better")
RPCC = ("rPCC: |PCC(ground truth, partner) - PCC(generated, partner)| of the coefficients flattened over "
        "frames; lower is better")
COMPONENTS = 8
CLUSTERS = 20
PAIRS = 100


@dataclass
class MotionBasis:
    """The landmark PCA and the coefficient scaling, fitted on ground truth."""

    mean_shape: np.ndarray  # [136]
    components: np.ndarray  # [K,136]
    centre: np.ndarray  # [F] coefficient means
    scale: np.ndarray  # [F] coefficient deviations

    def save(self, path) -> None:
        np.savez(path, mean_shape=self.mean_shape, components=self.components, centre=self.centre, scale=self.scale)

    @classmethod
    def load(cls, path) -> MotionBasis:
        with np.load(path) as z:
            return cls(z["mean_shape"], z["components"], z["centre"], z["scale"])


def normalised_shapes(landmarks: np.ndarray) -> np.ndarray:
    """landmarks [T,68,2] -> [T,136]: centred on their mean, divided by the distance of the eye centres."""
    eyes = np.linalg.norm(landmarks[:, 36:42].mean(1) - landmarks[:, 42:48].mean(1), axis=-1)  # [T]
    centred = landmarks - landmarks.mean(axis=1, keepdims=True)
    return (centred / np.maximum(eyes, 1e-6)[:, None, None]).reshape(len(landmarks), -1)  # [T,136]


def _raw(track, basis_mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    shapes = normalised_shapes(track.landmarks)  # [T,136]
    expression = (shapes - basis_mean) @ components.T  # [T,K]
    return np.concatenate([track.head_pose, track.mouth_opening[:, None], track.eye_openness[:, None],
                           expression], axis=1)  # [T,F]


def fit_basis(tracks: list, components: int = COMPONENTS) -> MotionBasis:
    """The PCA of ground-truth training tracks (FaceTrack-like: landmarks, head_pose, mouth_opening,
    eye_openness), and the coefficients' mean and deviation."""
    from sklearn.decomposition import PCA

    shapes = np.concatenate([normalised_shapes(t.landmarks)[t.found] for t in tracks])  # [N,136]
    if len(shapes) <= components:
        raise ValueError(f"{len(shapes)} ground-truth frames with a face: too few to fit the motion basis")
    pca = PCA(n_components=components, random_state=0).fit(shapes)
    raw = np.concatenate([_raw(t, pca.mean_, pca.components_)[t.found] for t in tracks])  # [N,F]
    return MotionBasis(pca.mean_, pca.components_, raw.mean(0), np.maximum(raw.std(0), 1e-6))


def coefficients(track, basis: MotionBasis) -> np.ndarray:
    """Standardised coefficients [T,F] (NaN rows where no face was found)."""
    return (_raw(track, basis.mean_shape, basis.components) - basis.centre) / basis.scale


def _valid(*xs: np.ndarray) -> np.ndarray:
    return np.logical_and.reduce([np.isfinite(x).all(axis=1) for x in xs])


def variance(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x).all(axis=1)]
    return float(np.var(x, axis=0).mean()) if len(x) > 1 else None


def diversity(x: np.ndarray, pairs: int = PAIRS) -> float | None:
    x = x[np.isfinite(x).all(axis=1)]
    if len(x) < 2:
        return None
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(x), pairs), rng.integers(0, len(x), pairs)
    return float(np.linalg.norm(x[a] - x[b], axis=1).mean())


def fit_clusters(truth: list[np.ndarray], clusters: int = CLUSTERS):
    """k-means on all ground-truth coefficient frames (DIM's pooled fit)."""
    from sklearn.cluster import KMeans

    x = np.concatenate([t[np.isfinite(t).all(axis=1)] for t in truth])
    return KMeans(n_clusters=min(clusters, len(x)), random_state=0, n_init="auto").fit(x)


def shannon_index(x: np.ndarray, kmeans) -> float | None:
    x = x[np.isfinite(x).all(axis=1)]
    if len(x) == 0:
        return None
    counts = np.bincount(kmeans.predict(x), minlength=kmeans.n_clusters)
    p = counts / counts.sum()
    return float(-(p * np.log2(p + 1e-6)).sum())


def dyadic_scores(generated: np.ndarray, truth: np.ndarray, partner: np.ndarray) -> dict[str, float | None]:
    """FD, P-FD, rPCC of a person's generated coefficients [T,F] against their ground truth [T,F] with
    the partner's ground truth [T,F]."""
    keep = _valid(generated, truth, partner)
    g, t, q = generated[keep], truth[keep], partner[keep]
    if len(g) < 3:
        return {"fd": None, "p_fd": None, "rpcc": None}
    pcc_true = np.corrcoef(t.reshape(-1), q.reshape(-1))[0, 1]
    pcc_gen = np.corrcoef(g.reshape(-1), q.reshape(-1))[0, 1] if g.std() > 1e-9 else 0.0
    return {"fd": frechet_between(g, t),
            "p_fd": frechet_between(np.concatenate([q, g], 1), np.concatenate([q, t], 1)),
            "rpcc": float(abs(pcc_true - pcc_gen))}
