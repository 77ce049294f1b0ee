"""The bootstrap interval of a sensitivity study's spread ratio (IQR ÷ seed std, `report.spread_ratio_interval`),
against a slow loop written from its definition with the same random draws."""

from __future__ import annotations

import numpy as np
import pytest

from tempbench.study.report import spread_ratio_interval


def slow_interval(values, repeats, reps, seed):
    """One replicate at a time: resample the trials (IQR), then each configuration's seeds (pooled variance)."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    trial_draws = rng.integers(0, len(values), (reps, len(values)))
    seed_draws = [rng.integers(0, len(g), (reps, len(g))) for g in repeats]
    ratios = []
    for b in range(reps):
        sample = values[trial_draws[b]]
        iqr = np.percentile(sample, 75) - np.percentile(sample, 25)
        variances = []
        for g, draws in zip(repeats, seed_draws):
            resampled = np.asarray(g, dtype=float)[draws[b]]
            variances.append(np.var(resampled, ddof=1))
        pooled = np.sqrt(np.mean(variances))
        if pooled > 0:
            ratios.append(iqr / pooled)
    return tuple(np.percentile(ratios, [2.5, 97.5]))


def test_the_interval_equals_the_loop_and_brackets_the_point_ratio() -> None:
    rng = np.random.default_rng(1)
    values = list(70 + 2 * rng.normal(size=12))
    repeats = [list(71 + 0.5 * rng.normal(size=4)), list(68 + 0.5 * rng.normal(size=4))]
    low, high = spread_ratio_interval(values, repeats, reps=300, seed=7)
    assert (low, high) == pytest.approx(slow_interval(values, repeats, 300, 7))
    iqr = np.percentile(values, 75) - np.percentile(values, 25)
    pooled = np.sqrt(np.mean([np.var(g, ddof=1) for g in repeats]))
    assert low < iqr / pooled < high
    assert spread_ratio_interval(values, repeats, reps=300, seed=7) == (low, high)  # seeded: reproducible


def test_no_interval_without_enough_trials_or_repeats() -> None:
    assert spread_ratio_interval([1.0, 2.0, 3.0], [[1.0, 2.0]]) == (None, None)
    assert spread_ratio_interval([1.0, 2.0, 3.0, 4.0], [[1.0]]) == (None, None)
    assert spread_ratio_interval([1.0, 2.0, 3.0, 4.0], [[1.0, 1.0]]) == (None, None)  # no seed noise at all
