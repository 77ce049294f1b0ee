"""rliable's interval estimates for a leaderboard (Agarwal et al., "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS 2021), beside the Student-t intervals and paired t-tests of `stats`:

- a cell's mean over its runs with its stratified-bootstrap 95 % percentile interval (`rliable.library.
  get_interval_estimates` with `rliable.metrics.aggregate_mean`; one task, so the strata are the cell's runs);
- the probability of improvement of a cell over its baseline, P(X > Y) + ½ P(X = Y) for a run X of the cell and a
  run Y of the baseline (the Mann–Whitney U statistic over n_x · n_y, `rliable.metrics.probability_of_improvement`),
  unpaired, with its bootstrap interval (each side's runs resampled independently);
- across a suite's datasets, the same probability averaged over the datasets, rliable's tasks (the columns of its
  runs × tasks matrices), each dataset's runs resampled within it.

Scores are higher-is-better: a metric whose lower value is better is negated first. rliable resamples with numpy's
*global* generator (`np.random.choice` in `StratifiedBootstrap.update_indices`; arch's own `random_state` keyword is
deprecated), so every estimate runs with the global generator seeded and the caller's state restored after: the same
rows give the same intervals in any process, whatever else it drew.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from tempbench.eval import get_metric, metric_label

BOOTSTRAP_REPS = 2000  # resamples per interval: the percentile bounds move by ~0.01 between seeds at 2,000
BOOTSTRAP_SEED = 0  # numpy's global seed for every estimate (restored after)
ACROSS_COLUMNS = ["label", "baseline", "metric", "datasets", "runs", "baseline_runs", "poi", "poi_lo", "poi_hi"]


@contextlib.contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """numpy's global generator seeded with `seed` inside the block, the caller's state restored after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _rliable() -> tuple[Any, Any]:
    # imported when used: arch imports statsmodels, ~1.3 s that `tempbench train` (which imports this package for its
    # result rows) must not pay
    from rliable import library, metrics

    return library, metrics


def mean_interval(values: Any, *, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """(lo, hi): the stratified-bootstrap 95 % percentile interval of the mean of the finite `values` (one cell's
    runs); NaN with fewer than 2."""
    x = np.sort(_finite(values))  # sorted: the resamples, and so the interval, do not depend on the rows' order
    if x.size < 2:
        return float("nan"), float("nan")
    library, metrics = _rliable()
    with seeded_global_rng(seed):
        _, intervals = library.get_interval_estimates({"cell": x[:, None]}, metrics.aggregate_mean, reps=reps)
    lo, hi = np.asarray(intervals["cell"], dtype=np.float64).ravel()
    return float(lo), float(hi)


def improvement(scores_x: np.ndarray, scores_y: np.ndarray, *, reps: int = BOOTSTRAP_REPS,
                seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """(P(X > Y), lo, hi): rliable's probability of improvement of X over Y, averaged over tasks, and its 95 %
    stratified-bootstrap interval. `scores_x` (runs_x × tasks) and `scores_y` (runs_y × tasks), higher better."""
    library, _ = _rliable()
    with seeded_global_rng(seed):
        point, intervals = library.get_interval_estimates({"x>y": [scores_x, scores_y]}, _memoised_improvement(),
                                                          reps=reps)
    lo, hi = np.asarray(intervals["x>y"], dtype=np.float64).ravel()
    return float(point["x>y"]), float(lo), float(hi)


def _memoised_improvement() -> Callable[[np.ndarray, np.ndarray], float]:
    """rliable's `probability_of_improvement`, task by task and remembered: it is the mean over tasks of each task's
    P(X > Y) + ½ P(X = Y), which depends only on the multisets of that task's runs, and with 3-5 runs the 2,000
    resamples of a task repeat a few hundred multisets: scipy's Mann–Whitney test (~0.5 ms a call) then runs once
    per distinct one."""
    _, metrics = _rliable()
    seen: dict[tuple[bytes, bytes], float] = {}

    def task_probability(x: np.ndarray, y: np.ndarray) -> float:
        x, y = np.sort(x), np.sort(y)
        key = (x.tobytes(), y.tobytes())
        if key not in seen:
            seen[key] = float(metrics.probability_of_improvement(x[:, None], y[:, None]))
        return seen[key]

    def probability(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean([task_probability(x[:, task], y[:, task]) for task in range(x.shape[1])]))

    return probability


def cell_intervals(metric: str, values: Any, reference: Any | None, *, reps: int = BOOTSTRAP_REPS,
                   seed: int = BOOTSTRAP_SEED) -> dict[str, float]:
    """A cell's bootstrap columns for `metric`: <m>_boot_lo, <m>_boot_hi (the interval of its mean), and against
    `reference` (its baseline's runs; None without one) <m>_poi, <m>_poi_lo, <m>_poi_hi, NaN unless both sides have
    2 finite runs."""
    out = dict(zip((f"{metric}_boot_lo", f"{metric}_boot_hi"), mean_interval(values, reps=reps, seed=seed)))
    poi = (float("nan"),) * 3
    if reference is not None:
        sign = 1.0 if get_metric(metric).higher_is_better else -1.0
        x, y = sign * np.sort(_finite(values)), sign * np.sort(_finite(reference))  # order-free, as above
        if x.size >= 2 and y.size >= 2:
            poi = improvement(x[:, None], y[:, None], reps=reps, seed=seed)
    return out | dict(zip((f"{metric}_poi", f"{metric}_poi_lo", f"{metric}_poi_hi"), poi))


def improvement_across_datasets(rows: pd.DataFrame, summary: pd.DataFrame, metric: str, *,
                                reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """Per configuration label that has a baseline on every dataset of `summary` (one cell per dataset): rliable's
    probability of improvement over that baseline on `metric`, averaged over the datasets, with its stratified-
    bootstrap interval. rliable's matrices hold the same number of runs on every task, so where a side's counts
    differ between datasets each dataset keeps its first k runs by seed (k: the smallest count; `runs`,
    `baseline_runs`). `rows`: `check_rows`' rows; columns ACROSS_COLUMNS; empty with fewer than 2 datasets (or
    `reps` 0)."""
    datasets = sorted(summary["dataset"].unique())
    if len(datasets) < 2 or reps <= 0:
        return pd.DataFrame(columns=ACROSS_COLUMNS)
    sign = 1.0 if get_metric(metric).higher_is_better else -1.0
    by_label = {d: table.set_index("label") for d, table in summary.groupby("dataset", sort=True)}
    out = []
    for label in dict.fromkeys(summary["label"]):
        if not all(_one_cell_with_baseline(by_label[d], label) for d in datasets):
            continue
        pairs = [(by_label[d].loc[label], by_label[d]) for d in datasets]
        x = [_runs(rows, d, rec["cell"], metric) for d, (rec, _) in zip(datasets, pairs)]
        y = [_runs(rows, d, table.loc[rec["baseline"], "cell"], metric) for d, (rec, table) in zip(datasets, pairs)]
        kx, ky = min(map(len, x)), min(map(len, y))
        if kx < 2 or ky < 2:
            continue
        poi = improvement(sign * np.column_stack([v[:kx] for v in x]), sign * np.column_stack([v[:ky] for v in y]),
                          reps=reps, seed=seed)
        baseline = ", ".join(sorted({str(rec["baseline"]) for rec, _ in pairs}))
        out.append(dict(zip(ACROSS_COLUMNS, (label, baseline, metric, len(datasets), kx, ky, *poi))))
    return pd.DataFrame(out, columns=ACROSS_COLUMNS)


def _one_cell_with_baseline(table: pd.DataFrame, label: str) -> bool:
    """Whether `label` names exactly one cell of this dataset's table, with a baseline that names exactly one."""
    if (table.index == label).sum() != 1:
        return False
    baseline = table.loc[label, "baseline"]
    return bool(baseline) and (table.index == baseline).sum() == 1


def _runs(rows: pd.DataFrame, dataset: str, cell: str, metric: str) -> np.ndarray:
    """The finite values of `metric` in one cell's rows, ordered by seed (then subset)."""
    part = rows[(rows["dataset"] == dataset) & (rows["config_hash"] == cell)].sort_values(["seed", "pair_key"])
    return _finite(part[metric])


def _finite(values: Any) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def format_across(table: pd.DataFrame, metric: str, datasets: int, reps: int = BOOTSTRAP_REPS) -> str:
    """The "Across datasets" Markdown section (nothing with fewer than 2 datasets or without resamples)."""
    if datasets < 2 or reps <= 0:
        return ""
    lines = ["", "## Across datasets", "",
             f"Probability of improvement on {metric_label(metric)} over each configuration's `fixed` baseline, "
             f"averaged over the {datasets} datasets (rliable: P(X > Y) + ½ P(X = Y) for a run X of the "
             "configuration and a run Y of the baseline on one dataset, then the mean over datasets), with its 95 % "
             f"stratified-bootstrap interval ({reps:,} resamples, each dataset's runs resampled within it). A "
             "configuration counts when it ran on every dataset; with unequal seed counts each dataset keeps its "
             "first k runs by seed.", ""]
    if table.empty:
        return "\n".join([*lines, "No configuration has a baseline and ≥ 2 runs on every dataset.", ""])
    lines += ["| configuration | baseline | datasets | runs | baseline runs | P(>fixed) |", "| --- " * 6 + "|"]
    for _, rec in table.iterrows():
        lines.append(f"| {rec['label']} | {rec['baseline']} | {rec['datasets']} | {rec['runs']} | "
                     f"{rec['baseline_runs']} | {improvement_text(rec['poi'], rec['poi_lo'], rec['poi_hi'])} |")
    return "\n".join([*lines, ""])


def improvement_text(poi: float, lo: float, hi: float) -> str:
    """"0.78 [0.61, 0.92]", or "–" without a value."""
    if not np.isfinite(poi):
        return "–"
    return f"{poi:.2f} [{lo:.2f}, {hi:.2f}]"
