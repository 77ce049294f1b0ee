"""Per-class leaderboard figures against class frequency (log x): the final class-mean τ of the per-sample-τ
strategies with each one's mean Spearman ρ, and the per-class accuracy of kNN-200 and the linear probe. Points per
class (mean over seeds) with bars from the seed minimum to maximum; configurations side by side at each class.
Near-balanced datasets get one slot per class, ordered by size, instead of a log axis that would pile them up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tempbench.eval import class_spearman
from tempbench.figures import dodge, figure, legend_outside, log_count_axis, save_figure, whiskers

from .plotdata import Board, Skip, metric_axis, seed_range

PER_CLASS = (("per_class_knn200", "knn200_top1"), ("per_class_linear", "linear_top1"))
BALANCED = 1.5


def mean_spearman(rows: pd.DataFrame, taus: np.ndarray, counts: np.ndarray) -> float:
    """The mean over seeds of the rows' `tau_spearman` (computed from the class means where the column is absent)."""
    if "tau_spearman" in rows.columns:
        values = pd.to_numeric(rows["tau_spearman"], errors="coerce").to_numpy(np.float64)
    else:
        values = np.array([class_spearman(t, counts)[0] for t in taus])
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


class ClassAxis:
    """Where classes sit on x: at their training-image count on a log axis, or — when every class has about as
    many images (within a factor BALANCED: a log axis would pile them up) — one slot per class, ordered by size."""

    def __init__(self, counts: list[np.ndarray]) -> None:
        c = np.concatenate(counts)
        self.counts = c[np.isfinite(c) & (c > 0)]
        self.balanced = bool(self.counts.size) and self.counts.max() / self.counts.min() < BALANCED

    def x(self, counts: np.ndarray, index: int, series: int) -> np.ndarray:
        """The x of each class for the index-th of `series` configurations (side by side)."""
        if self.balanced:
            ranks = np.argsort(np.argsort(counts, kind="stable"), kind="stable").astype(np.float64)
            return dodge(ranks, index, series, 0.8)
        span = float(np.log10(self.counts.max() / self.counts.min())) if self.counts.size else 1.0
        return dodge(counts, index, series, 0.05 * max(span, 0.07), log=True)

    def draw(self, ax: Any, counts: np.ndarray) -> None:
        """Set up `ax`'s x-axis: a log class-count axis, or one labelled slot per class (labels: the counts)."""
        if not self.balanced:
            log_count_axis(ax, self.counts)
            return
        ordered = np.sort(counts, kind="stable")
        ax.set_xlim(-0.6, len(ordered) - 0.4)
        step = max(1, -(-len(ordered) // 12))  # at most 12 labels
        ax.set_xticks(np.arange(0, len(ordered), step), [f"{v:g}" for v in ordered[::step]], fontsize="small")
        ax.set_xlabel(f"classes by training images (near-balanced: {self.counts.min():g}–{self.counts.max():g})")


def _points(ax: object, board: Board, label: str, x: np.ndarray, values: np.ndarray,
            bounds: tuple[float | None, float | None], legend: str) -> None:
    mean, low, high = seed_range(values)
    ok = np.isfinite(mean)
    style = board.styles[label]
    ax.errorbar(x[ok], mean[ok], yerr=whiskers(mean[ok], low[ok], high[ok], bounds), fmt=style.marker,
                color=style.color, markersize=4, elinewidth=0.8, capsize=1.5, label=legend,
                clip_on=False)  # a point at 0 % shows whole; its whiskers are clipped at the bounds already


def save_tau_vs_frequency(board: Board, dataset: str, rows: pd.DataFrame, path: Path) -> list[Path]:
    """The final class-mean τ (`tau_by_class`, (seeds, C) per configuration) against training images per class,
    one series per per-sample-τ configuration, with its mean Spearman ρ in the legend (iSogCLR's claim: τ tracks
    how common a class's semantics are). Skip when no configuration learns a τ per sample."""
    found = []
    for label, sub in board.by_cell(rows):
        if not board.per_sample(sub):
            continue
        counts = board.class_counts(sub)
        taus = board.per_class(sub, "tau_by_class", counts.size)
        if taus is not None:
            found.append((label, counts, taus, mean_spearman(sub, taus, counts), len(sub)))
    if not found:
        raise Skip("no per-sample-τ configuration with a final tau_by_class on this dataset (global-τ strategies "
                   "leave it empty)")
    with figure(1, width=5.2, height=3.5) as (fig, (ax,)):
        axis = ClassAxis([f[1] for f in found])
        for i, (label, counts, taus, rho, seeds) in enumerate(found):
            rho_text = f"ρ̄ = {rho:+.2f}" if np.isfinite(rho) else "ρ undefined"
            _points(ax, board, label, axis.x(counts, i, len(found)), taus, (0.0, None),
                    f"{label}  ({rho_text}, {seeds} seeds)")
        axis.draw(ax, found[0][1])
        ax.set_ylabel("class-mean τ (final)")
        ax.grid(alpha=0.3)
        fig.suptitle(f"{dataset}: class-mean τ vs class size (mean over seeds, bars min–max)", fontsize="medium")
        legend_outside(fig, [ax])
        return save_figure(fig, path)


def save_class_accuracy(board: Board, dataset: str, rows: pd.DataFrame, path: Path) -> list[Path]:
    """Per-class test accuracy (`per_class_knn200`, `per_class_linear`: (seeds, C) each) against training images
    per class, one panel per classifier: where a long tail costs accuracy, and which strategy loses less there."""
    cells = board.by_cell(rows)
    panels = []
    for column, metric in PER_CLASS:
        series = []
        for label, sub in cells:
            try:
                counts = board.class_counts(sub)
            except Skip:
                continue
            values = board.per_class(sub, column, counts.size)
            if values is not None:
                series.append((label, counts, values))
        if series:
            panels.append((metric, series))
    if not panels:
        raise Skip("no per-class accuracies (per_class_knn200 / per_class_linear with class_counts) in these rows")
    with figure(len(panels), width=4.6, height=3.5) as (fig, axes):
        for ax, (metric, series) in zip(axes, panels, strict=True):
            ylabel, bounds = metric_axis(metric)
            axis = ClassAxis([s[1] for s in series])
            for i, (label, counts, values) in enumerate(series):
                _points(ax, board, label, axis.x(counts, i, len(series)), values, bounds, label)
            axis.draw(ax, series[0][1])
            ax.set_ylabel(ylabel.replace("top-1", "per-class accuracy"))
            low = min(float(np.nanmin(s[2])) for s in series)
            ax.set_ylim(bottom=max(-np.inf if bounds[0] is None else bounds[0], low - 5.0),
                        top=None if bounds[1] is None else bounds[1] + 2.0)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{dataset}: per-class test accuracy vs class size (mean over seeds, bars min–max)",
                     fontsize="medium")
        legend_outside(fig, axes)
        return save_figure(fig, path)
