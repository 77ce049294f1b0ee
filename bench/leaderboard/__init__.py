"""Result rows and leaderboards: `runs.csv` (one row per run) -> cells keyed by resolved configuration ->
Markdown, CSV, a terminal table and figures.

    rows = read_rows("runs/quick/runs.csv")
    board = build_leaderboard(rows, "runs/quick", source="tempbench run")
    print(board.terminal)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tempbench.util import write_atomic

from .bootstrap import BOOTSTRAP_REPS, BOOTSTRAP_SEED, format_across, improvement_across_datasets
from .controls import format_controls
from .figures import FigureWarning, save_leaderboard_figures
from .groups import format_groups
from .render import format_markdown, format_subsets, format_terminal
from .rows import append_row, keep_row, read_rows
from .rulesets import decomposition, format_choices, format_decomposition, read_rulesets
from .stats import holm, mean_ci, paired_test
from .subsets import subset_variance
from .table import check_rows, default_metrics, leaderboard_metrics, summarize_rows


@dataclass
class Leaderboard:
    """What `build_leaderboard` made: `summary` (one row per dataset and configuration cell, `summarize_rows`'
    columns with rliable's), the `metrics` shown, the Markdown and terminal renderings, every file written (tables
    first), and `across`: the probability of improvement over `fixed` across datasets (`improvement_across_datasets`;
    empty with one dataset)."""

    summary: pd.DataFrame
    metrics: list[str]
    markdown: str
    terminal: str
    files: list[Path]
    across: pd.DataFrame = field(default_factory=pd.DataFrame)


def build_leaderboard(rows: pd.DataFrame, out_dir: str | os.PathLike[str], *, metrics: list[str] | None = None,
                      source: str = "tempbench leaderboard", figures: bool = True,
                      rulesets: Mapping[str, Any] | None = None, primary_metric: str | None = None,
                      bootstrap_reps: int = BOOTSTRAP_REPS, bootstrap_seed: int = BOOTSTRAP_SEED) -> Leaderboard:
    """Write leaderboard.md and leaderboard.csv into out_dir (atomically), then (unless `figures` is False) the
    figures, each failure a warning. `metrics`: the columns (default: the registry's leaderboard metrics these rows
    report). `rulesets`: the folder's `rulesets.json` (`read_rulesets`): each cell's ruleset, the tuned `fixed` as
    the baseline, the τ-matched controls and where a per-sample strategy's gain comes from. `primary_metric`: the
    metric declared before the runs (a suite's `primary_metric`): Holm corrects its Δ only, the others' p are
    exploratory, and it heads the Δ, probability-of-improvement and "Across datasets" columns (else the first
    metric). `bootstrap_reps`, `bootstrap_seed`: rliable's stratified bootstrap (`bootstrap`), seeded, so a
    leaderboard rebuilt from the same rows has the same intervals."""
    out_dir = Path(out_dir)
    metrics = leaderboard_metrics(rows, metrics, primary_metric)
    if not metrics:
        raise ValueError("these rows report none of the leaderboard metrics; name some with --metric")
    headline = primary_metric or metrics[0]
    summary = summarize_rows(rows, metrics, rulesets=rulesets, primary_metric=primary_metric,
                             bootstrap_reps=bootstrap_reps, bootstrap_seed=bootstrap_seed)
    checked = check_rows(rows, metrics)
    across = improvement_across_datasets(checked, summary, headline, reps=bootstrap_reps, seed=bootstrap_seed)
    subsets = subset_variance(rows, summary, metrics)
    parts = decomposition(checked, summary, rulesets, headline)
    markdown = (format_markdown(summary, metrics, source, primary_metric=primary_metric)
                + format_across(across, headline, summary["dataset"].nunique(), bootstrap_reps)
                + format_choices(summary) + format_decomposition(parts, headline) + format_groups(rows, rulesets)
                + format_subsets(subsets, metrics))
    markdown += format_controls(rows, headline)  # class-order placebo, long-tail interaction
    files = [write_atomic(out_dir / "leaderboard.md", lambda fh: fh.write(markdown)),
             write_atomic(out_dir / "leaderboard.csv", lambda fh: summary.to_csv(fh, index=False))]
    if not subsets.empty:
        files.append(write_atomic(out_dir / "leaderboard_subsets.csv", lambda fh: subsets.to_csv(fh, index=False)))
    try:
        if figures:
            files += save_leaderboard_figures(check_rows(rows, metrics), summary, metrics, out_dir)
    except Exception as exc:  # tables first: a figure must never cost the leaderboard
        warnings.warn(f"leaderboard figures in {out_dir} failed: {type(exc).__name__}: {exc}", FigureWarning,
                      stacklevel=2)
    terminal = format_terminal(summary, metrics, primary_metric=primary_metric)
    return Leaderboard(summary, metrics, markdown, terminal, files, across)


__all__ = [
    "FigureWarning",
    "Leaderboard",
    "append_row",
    "build_leaderboard",
    "check_rows",
    "default_metrics",
    "format_markdown",
    "format_terminal",
    "holm",
    "keep_row",
    "mean_ci",
    "paired_test",
    "read_rows",
    "read_rulesets",
    "summarize_rows",
]
