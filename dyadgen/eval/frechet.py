"""Frechet distance between two Gaussians fitted to feature sets, and FID / FVD built on it.

    d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))

FID uses the 2048-d pool features of the FID Inception-v3 on single frames; FVD the 400-d I3D logits of
16-frame clips (Unterthiner et al. 2019). Both networks read their weights from local files
(dyadgen.eval.networks); without them the figures are reported as unavailable.
"""

from __future__ import annotations

import warnings

import numpy as np


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features [N,D] -> mean [D], covariance [D,D] (unbiased)."""
    x = np.asarray(features, np.float64)
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The squared Frechet distance of N(mu1, s1) and N(mu2, s2). The matrix square root is scipy's;
    a tiny ridge is added when the product is singular (few samples), as the reference FID code does."""
    from scipy import linalg

    diff = mu1 - mu2
    with warnings.catch_warnings():  # a singular product is handled below
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        ridge = np.eye(len(s1)) * 1e-6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            covmean = linalg.sqrtm((s1 + ridge) @ (s2 + ridge))
    covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_between(a: np.ndarray, b: np.ndarray) -> float | None:
    """Frechet distance of the Gaussians of two feature sets [N,D] (None with fewer than 2 rows each)."""
    if len(a) < 2 or len(b) < 2:
        return None
    return frechet_distance(*gaussian(a), *gaussian(b))
