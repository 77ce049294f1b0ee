"""Result rows and leaderboards: `runs.csv` (one row per run) -> cells keyed by resolved configuration ->
Markdown, CSV, a terminal table and figures.

    rows = read_rows("runs/quick/runs.csv")
    board = build_leaderboard(rows, "runs/quick", source="tempbench run")
    print(board.terminal)
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tempbench.util import write_atomic

from .figures import FigureWarning, save_leaderboard_figures
from .groups import format_groups
from .render import format_markdown, format_subsets, format_terminal
from .rows import append_row, keep_row, read_rows
from .stats import holm, mean_ci, paired_test
from .subsets import subset_variance
from .table import check_rows, default_metrics, summarize_rows


@dataclass
class Leaderboard:
    """What `build_leaderboard` made: `summary` (one row per dataset and configuration cell, `summarize_rows`'
    columns), the `metrics` shown, the Markdown and terminal renderings, and every file written (tables first)."""

    summary: pd.DataFrame
    metrics: list[str]
    markdown: str
    terminal: str
    files: list[Path]


def build_leaderboard(rows: pd.DataFrame, out_dir: str | os.PathLike[str], *, metrics: list[str] | None = None,
                      source: str = "tempbench leaderboard", figures: bool = True) -> Leaderboard:
    """Write leaderboard.md and leaderboard.csv into out_dir (atomically), then (unless `figures` is False) the
    figures, each failure a warning. `metrics`: the columns (default: the registry's leaderboard metrics these rows
    report)."""
    out_dir = Path(out_dir)
    metrics = metrics if metrics is not None else default_metrics(rows)
    if not metrics:
        raise ValueError("these rows report none of the leaderboard metrics; name some with --metric")
    summary = summarize_rows(rows, metrics)
    subsets = subset_variance(rows, summary, metrics)
    markdown = format_markdown(summary, metrics, source) + format_groups(rows) + format_subsets(subsets, metrics)
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
    return Leaderboard(summary, metrics, markdown, format_terminal(summary, metrics), files)


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
    "summarize_rows",
]
