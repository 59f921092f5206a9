"""One reported figure: a value with its 95 % interval, its n, its definition and the reference it follows.

Intervals resample DIALOGUES (the held-out videos), not windows: windows cut from one video share its
people, its recording and its conversation, so they are not independent draws (a cluster bootstrap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

BOOTSTRAP = 2000  # resamples of the dialogues for the interval of a mean
SEED = 0  # fixed: the same scores give the same interval on every run
OWN = "DyadGen's own (no published reference)"


@dataclass
class Figure:
    value: float | None  # None: unavailable (no clip had what the metric needs)
    low: float | None  # 95 % interval over dialogues: percentile bootstrap (means), jackknife (pooled figures)
    high: float | None
    n: int  # windows that contributed
    definition: str
    follows: str = OWN  # the reference implementation (repository and file) whose formula this is
    differs: str = ""  # where this figure differs from that reference ("" = it does not)
    dialogues: int = 0  # independent units the interval resampled

    def to_json(self) -> dict:
        return asdict(self)

    def text(self, digits: int = 3) -> str:
        if self.value is None:
            return "n/a"
        if self.low is None:
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _units(groups: Sequence[str] | None, n: int) -> np.ndarray:
    """Dialogue index of each value (each value its own dialogue when none are given)."""
    if groups is None:
        return np.arange(n)
    return np.unique(np.asarray(groups), return_inverse=True)[1]


def summarise(per_clip: list[float | None], definition: str, groups: Sequence[str] | None = None,
              follows: str = OWN, differs: str = "") -> Figure:
    """Mean of the clips' values (None and NaN left out) with a 95 % percentile interval from resampling the
    dialogues (``groups``: the dialogue of each clip; None = every clip its own) with replacement."""
    x = np.array([np.nan if v is None else v for v in per_clip], np.float64)
    units = _units(groups, len(x))
    keep = np.isfinite(x)
    x, units = x[keep], units[keep]
    if x.size == 0:
        return Figure(None, None, None, 0, definition, follows, differs)
    ids, units = np.unique(units, return_inverse=True)
    G = len(ids)
    if G < 2:
        return Figure(float(x.mean()), None, None, int(x.size), definition, follows, differs, G)
    sums, counts = np.bincount(units, x, G), np.bincount(units, minlength=G).astype(np.float64)  # [G] each
    rng = np.random.default_rng(SEED)
    draws = rng.integers(0, G, (BOOTSTRAP, G))  # [B,G] dialogues drawn
    means = sums[draws].sum(1) / counts[draws].sum(1)  # [B] the mean over every window of the drawn dialogues
    low, high = np.percentile(means, [2.5, 97.5])
    return Figure(float(x.mean()), float(low), float(high), int(x.size), definition, follows, differs, G)


def pooled(items: list, groups: Sequence[str], statistic: Callable[[list], float | None], definition: str,
           follows: str = OWN, differs: str = "") -> Figure:
    """A statistic of all items pooled (SID's histogram, FID's Gaussians) with a 95 % delete-one-dialogue
    jackknife interval (value +- 1.96 standard errors).

    Not a bootstrap: a resample that repeats dialogues and leaves others out has fewer distinct items, which
    moves an entropy down and a Frechet distance up, so the resampled values can all lie on one side of the
    value and their percentiles miss it."""
    if not items:
        return Figure(None, None, None, 0, definition, follows, differs)
    value = statistic(items)
    units = _units(groups, len(items))
    G = int(units.max()) + 1
    if value is None or G < 2:
        return Figure(value, None, None, len(items), definition, follows, differs, G)
    left_out = [statistic([it for it, u in zip(items, units, strict=True) if u != g]) for g in range(G)]
    stats = np.array([s for s in left_out if s is not None], np.float64)  # [G'] the statistic without dialogue g
    if stats.size < 2:
        return Figure(value, None, None, len(items), definition, follows, differs, G)
    se = float(np.sqrt((stats.size - 1) / stats.size * ((stats - stats.mean()) ** 2).sum()))
    return Figure(value, value - 1.96 * se, value + 1.96 * se, len(items), definition, follows, differs, G)


def unavailable(definition: str, reason: str, follows: str = OWN, differs: str = "") -> Figure:
    return Figure(None, None, None, 0, f"{definition} - unavailable: {reason}", follows, differs)


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
