"""One reported figure: a mean over clips with its 95 % interval, its n and its definition."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

BOOTSTRAP = 2000  # resamples of the clips for the interval
SEED = 0  # fixed: the same scores give the same interval on every run


@dataclass
class Figure:
    value: float | None  # None: unavailable (no clip had what the metric needs)
    low: float | None  # 95 % percentile-bootstrap interval over clips
    high: float | None
    n: int  # clips that contributed
    definition: str

    def to_json(self) -> dict:
        return asdict(self)

    def text(self, digits: int = 3) -> str:
        if self.value is None:
            return "n/a"
        if self.low is None or self.n < 2:
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def summarise(per_clip: list[float | None], definition: str) -> Figure:
    """Mean of the clips' values (None and NaN left out) with a percentile-bootstrap 95 % interval."""
    x = np.array([v for v in per_clip if v is not None and np.isfinite(v)], np.float64)
    if x.size == 0:
        return Figure(None, None, None, 0, definition)
    if x.size == 1:
        return Figure(float(x[0]), None, None, 1, definition)
    rng = np.random.default_rng(SEED)
    means = x[rng.integers(0, x.size, (BOOTSTRAP, x.size))].mean(axis=1)  # [BOOTSTRAP]
    low, high = np.percentile(means, [2.5, 97.5])
    return Figure(float(x.mean()), float(low), float(high), int(x.size), definition)


def unavailable(definition: str, reason: str) -> Figure:
    return Figure(None, None, None, 0, f"{definition} - unavailable: {reason}")


def masked_mean(x: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean of x where mask and x is finite; None when nothing is left."""
    keep = mask & np.isfinite(x)
    return float(x[keep].mean()) if keep.any() else None


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation over the finite pairs; None when fewer than 3 or either side is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])
