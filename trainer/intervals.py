"""95 % intervals for retrieval figures: bootstrap over queries, t over seeds.

A retrieval figure is a mean of per-query outcomes (R@1: 1 when the query's
own sentence ranks first). Its uncertainty from the choice of queries is the
percentile bootstrap: draw the queries again with replacement ``resamples``
times, take the figure each time, report the 2.5th and 97.5th percentiles
(``numpy.quantile``, linear interpolation). A mean over languages resamples
within each language (strata), so every language keeps its query count.
The generator is ``numpy.random.default_rng(seed)`` with a fixed seed: the
same report gives the same interval. Several training seeds: Student's t
interval of the mean over seeds (seed to seed variation, which the bootstrap
over one seed's queries does not see).

Example::

    bootstrap_mean([1, 0, 1, 1])                    # (lo, hi) of R@1
    bootstrap_stratified_mean({"fr": [1, 0], "de": [0, 0, 1]})
    t_interval([0.31, 0.28, 0.35])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
# Two-sided 97.5 % quantiles of Student's t by degrees of freedom (scipy-free).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def _bounds(stats: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)


def bootstrap_mean(
    values: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (None when empty)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    return _bounds(x[idx].mean(axis=1), level)


def bootstrap_stratified_mean(
    groups: Mapping[str, Sequence[float]],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[float, float] | None:
    """Interval of the mean over groups of each group's mean (queries resampled
    within their group, groups in sorted order from one generator)."""
    arrays = [np.asarray(groups[g], dtype=np.float64) for g in sorted(groups)]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        return None
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for a in arrays:
        total += a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    return _bounds(total / len(arrays), level)


def t_interval(values: Sequence[float], *, level: float = LEVEL) -> tuple[float, float] | None:
    """Student's t interval of the mean (one value: a zero-width interval; none: None)."""
    if level != LEVEL:
        raise ValueError(f"only the {LEVEL:.0%} t interval is tabulated")
    x = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not x:
        return None
    mean = sum(x) / len(x)
    if len(x) == 1:
        return mean, mean
    if len(x) - 1 not in _T975:
        raise ValueError(f"t quantile tabulated for up to {max(_T975) + 1} values")
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (len(x) - 1))
    half = _T975[len(x) - 1] * sd / math.sqrt(len(x))
    return mean - half, mean + half
