"""The statistics of a leaderboard: mean ± Student-t 95 % interval over seeds, the paired t-test against the
baseline on matched seeds, and Holm's step-down correction for the many comparisons one leaderboard makes. rliable's
stratified-bootstrap intervals and probability of improvement sit beside these in `bootstrap`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci(values: Any) -> tuple[float, float, int]:
    """(mean, 95 % CI half-width t_{0.975, n-1} · sd / √n, n) of the finite values; half-width NaN when n < 2."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), 0
    if x.size == 1:
        return float(x[0]), float("nan"), 1
    # Student t, not z = 1.96: with the 3-5 seeds of a sweep, a normal interval would be 29-54 % too narrow
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half), int(x.size)


def paired_test(treatment: pd.Series, baseline: pd.Series) -> dict[str, float]:
    """Paired t-test of treatment − baseline over the index values (pairing keys) both have with finite values.

    Returns diff (mean difference), diff_ci95 (its CI half-width), p (two-sided, scipy.stats.ttest_rel) and pairs;
    NaN except `pairs` with fewer than 2 pairs, and p is NaN when every difference is the same (t undefined).
    """
    joined = pd.concat({"a": treatment, "b": baseline}, axis=1, join="inner").astype(np.float64).dropna()
    n = len(joined)
    out = {"diff": float("nan"), "diff_ci95": float("nan"), "p": float("nan"), "pairs": float(n)}
    if n < 2:
        return out
    diff = joined["a"].to_numpy() - joined["b"].to_numpy()
    out["diff"], out["diff_ci95"], _ = mean_ci(diff)
    if np.ptp(diff) > 1e-12 * max(1.0, float(np.abs(diff).max())):  # else scipy warns and returns NaN
        out["p"] = float(stats.ttest_rel(joined["a"], joined["b"]).pvalue)
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN entries stay NaN and do not count
    towards the family size."""
    p = np.asarray(p_values, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(p))
    out = np.full(p.shape, np.nan)
    order = finite[np.argsort(p[finite], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()
