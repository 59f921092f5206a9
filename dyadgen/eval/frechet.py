"""Frechet distance between two Gaussians fitted to feature sets, and FID / FVD built on it.

    d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))

FID uses the 2048-d pool features of the FID Inception-v3 on single frames; FVD the 400-d I3D logits of
16-frame clips (Unterthiner et al. 2019). Both networks read their weights from local files
(dyadgen.eval.networks); without them the figures are reported as unavailable.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features [N,D] -> mean [D], covariance [D,D] (unbiased)."""
    x = np.asarray(features, np.float64)
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The squared Frechet distance of N(mu1, s1) and N(mu2, s2). The matrix square root is scipy's;
    a tiny ridge is added when the product is singular (few samples), as the reference FID code does."""
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


def frechet_of_samples(a: np.ndarray, b: np.ndarray) -> float | None:
    """The same distance as ``frechet_between``, computed exactly from the samples without a matrix square
    root: with A, B the centred samples [n,D], tr((S1 S2)^(1/2)) is the sum of the singular values of A B^T
    over sqrt((n1 - 1)(n2 - 1)) (the nonzero eigenvalues of S1 S2 are those of (A B^T)(A B^T)^T, scaled). Exact
    where few samples make the covariances singular (scipy's sqrtm is not), and fast when n < D."""
    if len(a) < 2 or len(b) < 2:
        return None
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    A, B = a - a.mean(0), b - b.mean(0)  # [n1,D], [n2,D]
    c1, c2 = len(a) - 1, len(b) - 1
    diff = a.mean(0) - b.mean(0)
    cross = np.linalg.svd(A @ B.T, compute_uv=False).sum() / np.sqrt(c1 * c2)
    return float(diff @ diff + (A * A).sum() / c1 + (B * B).sum() / c2 - 2 * cross)
