"""Intervals of retrieval figures: the bootstrap on tiny fixed examples whose
bounds are worked out here independently (enumeration, numpy, scipy)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from trainer import intervals
from trainer.report import LanguageResult, Report, markdown


def exact_bootstrap_quantiles(values, level=0.95):
    """Bounds of the *exact* bootstrap distribution of the mean: enumerate every
    one of the n**n resamples, then read the tail quantiles off its CDF."""
    n = len(values)
    means = sorted(sum(values[i] for i in idx) / n for idx in itertools.product(range(n), repeat=n))
    tail = (1 - level) / 2
    lo = means[math.floor(tail * len(means))]
    hi = means[math.ceil((1 - tail) * len(means)) - 1]
    return lo, hi


def test_bootstrap_mean_lands_on_the_enumerated_bounds():
    hits = [1.0, 1.0, 1.0, 0.0]
    # 256 resamples: mean 0 has p=1/256, <=0.25 has 13/256 (cdf 0.004, 0.051): the
    # 2.5 % point is 0.25; mean 1 has p=81/256 > 2.5 %: the 97.5 % point is 1.0.
    assert exact_bootstrap_quantiles(hits) == (0.25, 1.0)
    assert intervals.bootstrap_mean(hits) == (0.25, 1.0)


def test_bootstrap_mean_is_numpys_percentile_bootstrap_with_seed_0():
    # Reciprocal ranks (not 0/1): many distinct means, so the quantiles interpolate.
    hits = np.array([1, 0.5, 0.2, 1, 1, 0.25, 1, 0.1, 1 / 3, 0.125])
    rng = np.random.default_rng(0)
    draws = hits[rng.integers(0, hits.size, size=(1000, hits.size))].mean(axis=1)
    expected = tuple(np.quantile(draws, [0.025, 0.975]))
    assert intervals.bootstrap_mean(hits) == pytest.approx(expected, abs=1e-12)
    lo, hi = intervals.bootstrap_mean(hits)
    assert lo < hits.mean() < hi


def test_bootstrap_degenerate_cases():
    assert intervals.bootstrap_mean([]) is None
    assert intervals.bootstrap_mean([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert intervals.bootstrap_stratified_mean({}) is None
    # Every resample of a constant group has the same mean: 0.5 each time.
    assert intervals.bootstrap_stratified_mean({"fr": [1, 1, 1, 1], "de": [0, 0]}) == (0.5, 0.5)


def test_stratified_mean_resamples_within_languages():
    # "de" (sorted first) takes the generator's first draws, as bootstrap_mean
    # does; "fr" is constant 1, so the mean over languages is (de + 1) / 2.
    lo, hi = exact_bootstrap_quantiles([1.0, 1.0, 1.0, 0.0])
    got = intervals.bootstrap_stratified_mean({"fr": [1.0], "de": [1.0, 1.0, 1.0, 0.0]})
    assert got == ((lo + 1) / 2, (hi + 1) / 2) == (0.625, 1.0)


def test_t_interval_matches_scipy():
    from scipy import stats

    values = [0.2, 0.3, 0.45]
    mean, sem = np.mean(values), stats.sem(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
    assert intervals.t_interval(values) == pytest.approx((lo, hi), abs=1e-3)
    assert intervals.t_interval([0.3]) == (0.3, 0.3)
    assert intervals.t_interval([]) is None


def test_report_carries_per_language_intervals_and_counts():
    results = {
        "fr": LanguageResult(
            r_at_1=0.75, r_at_5=1.0, mrr=0.8, n_queries=4, pool_size=4, hits=[1, 1, 1, 0]
        ),
        "sw": LanguageResult(
            r_at_1=0.5, r_at_5=1.0, mrr=0.7, n_queries=2, pool_size=2, hits=[1, 0]
        ),
    }
    data = Report(results=results, seen=["fr"], unseen=["sw"]).as_dict()
    assert data["r_at_1_ci95"]["fr"] == [0.25, 1.0]
    assert data["mean_r_at_1_seen_ci95"] == [0.25, 1.0]  # one language: its own interval
    assert data["n_queries"] == {"fr": 4, "sw": 2}
    assert (data["n_queries_seen"], data["n_queries_unseen"]) == (4, 2)
    assert data["interval"]["resamples"] == 1000 and data["interval"]["seed"] == 0
    text = markdown(data)
    assert "| fr | seen | 75.0 | 25.0-100.0 |" in text
    assert "4 queries" in text and "1000 resamples, seed 0" in text
