"""Leaderboard figures about the baseline: accuracy against τ for the `fixed` cells that differ only in τ (a τ sweep,
with the other configurations of the same run settings as dashed references), and a forest plot of every cell's
paired Δ against its `fixed` baseline (95 % CI over matched seeds; filled where the Holm-corrected p < 0.05)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tempbench.figures import figure, legend_outside, save_figure, whiskers

from .plotdata import Board, Skip, metric_axis
from .table import BASELINE, cell_settings, run_settings_of

TAU_KEY = "hyperparameters.tau"
ALPHA = 0.05
MAX_PANELS = 4


def tau_sweeps(board: Board, rows: pd.DataFrame) -> tuple[dict[str, list[tuple[float, str]]], dict[str, str]]:
    """({sweep key: [(τ, fixed cell label), ...] sorted by τ} for each group of `fixed` cells that share every
    setting but τ and have ≥ 2 values of it, {label: run-settings key} of every cell here)."""
    settings = cell_settings(rows)
    label_of = dict(zip(rows["config_hash"], rows["label"], strict=False))
    runs = {label_of[h]: run_settings_of(s) for h, s in settings.items()}
    groups: dict[str, list[tuple[float, str]]] = {}
    for h, s in settings.items():
        tau = s.get(TAU_KEY)
        if s.get("strategy", rows.loc[rows["config_hash"] == h, "strategy"].iloc[0]) != BASELINE or \
                not isinstance(tau, (int, float)):
            continue
        key = json.dumps({k: v for k, v in s.items() if k != TAU_KEY}, sort_keys=True, default=str)
        groups.setdefault(key, []).append((float(tau), label_of[h]))
    sweeps = {k: sorted(v) for k, v in groups.items() if len({t for t, _ in v}) >= 2}
    return sweeps, runs


def save_fixed_tau(board: Board, dataset: str, rows: pd.DataFrame, path: Path) -> list[Path]:
    """Accuracy against τ (log x) of each τ sweep of `fixed`, one panel per metric (up to MAX_PANELS), with the
    other strategies of the same run settings as dashed lines: does any strategy beat the best-tuned constant τ?"""
    sweeps, runs = tau_sweeps(board, rows)
    if not sweeps:
        raise Skip(f"no `{BASELINE}` configurations that differ only in τ on this dataset (a τ sweep draws this)")
    table = board.summary[board.summary["dataset"] == dataset].set_index("label")
    metrics = board.metrics[:MAX_PANELS]
    with figure(len(metrics), width=3.6, height=3.2) as (fig, axes):
        for ax, metric in zip(axes, metrics, strict=True):
            ylabel, bounds = metric_axis(metric)
            for k, points in enumerate(sweeps.values()):
                taus = np.array([t for t, _ in points])
                mean = table.loc[[lb for _, lb in points], f"{metric}_mean"].to_numpy(np.float64)
                half = np.nan_to_num(table.loc[[lb for _, lb in points], f"{metric}_ci95"].to_numpy(np.float64))
                style = board.styles[points[0][1]]
                name = BASELINE if len(sweeps) == 1 else f"{BASELINE} sweep {k + 1}"
                ax.errorbar(taus, mean, yerr=whiskers(mean, mean - half, mean + half, bounds), color=style.color,
                            marker=style.marker, linestyle=style.linestyle, capsize=2, markersize=4, label=name)
                same = runs[points[0][1]]
                for label in board.order(lb for lb, r in runs.items() if r == same and board.cells[lb] != BASELINE):
                    if label in table.index and np.isfinite(table.loc[label, f"{metric}_mean"]):
                        ax.axhline(table.loc[label, f"{metric}_mean"], color=board.styles[label].color,
                                   linestyle="--", linewidth=0.9, label=label)
            ax.set_xscale("log")
            ax.set_xlabel("τ of fixed")
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=bounds[0] if bounds[0] is not None and ax.get_ylim()[0] < bounds[0] else None,
                        top=bounds[1] if bounds[1] is not None and ax.get_ylim()[1] > bounds[1] else None)
            _tau_ticks(ax, [t for pts in sweeps.values() for t, _ in pts])
            ax.grid(alpha=0.3)
        fig.suptitle(f"{dataset}: accuracy vs τ of {BASELINE} (mean ± 95 % CI over seeds; dashed: other "
                     "configurations, same run settings)", fontsize="medium")
        handles = {lb: h for ax in axes for h, lb in zip(*ax.get_legend_handles_labels(), strict=True)}
        legend_outside(fig, axes, handles=dict(sorted(handles.items(), key=lambda kv: kv[0] != BASELINE
                                                      and not kv[0].startswith(f"{BASELINE} sweep"))))
        return save_figure(fig, path)


def _tau_ticks(ax: Any, taus: list[float]) -> None:
    """The swept τ values as the x tick labels (no log-axis minor labels), thinned to at most 7."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    values = sorted(set(taus))
    step = -(-len(values) // 7)
    ax.xaxis.set_major_locator(FixedLocator(values[::step]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(min(values) / 1.2, max(values) * 1.2)


def save_forest(board: Board, dataset: str, rows: pd.DataFrame, path: Path) -> list[Path]:
    """A forest plot: per metric (up to 2 · MAX_PANELS panels), every cell's paired Δ against its `fixed` baseline
    with its 95 % CI over matched seeds; filled markers where the Holm-corrected p < ALPHA."""
    table = board.summary[board.summary["dataset"] == dataset].set_index("label")
    metrics = [m for m in board.metrics if f"{m}_diff" in table and np.isfinite(table[f"{m}_diff"]).any()]
    if not metrics:
        raise Skip(f"no configuration has a paired Δ against a `{BASELINE}` baseline (same run settings, ≥ 2 "
                   "matched seeds) on this dataset")
    labels = board.order(lb for lb in table.index if any(np.isfinite(table.loc[lb, f"{m}_diff"]) for m in metrics))
    metrics = metrics[:2 * MAX_PANELS]
    y = np.arange(len(labels))[::-1]  # the first label at the top
    with figure(len(metrics), width=2.9, height=0.9 + 0.32 * len(labels), cols=MAX_PANELS) as (fig, axes):
        for j, (ax, metric) in enumerate(zip(axes, metrics, strict=True)):
            sub = table.loc[labels]
            diff = sub[f"{metric}_diff"].to_numpy(np.float64)
            half = np.nan_to_num(sub[f"{metric}_diff_ci95"].to_numpy(np.float64))
            holm = sub[f"{metric}_p_holm"].to_numpy(np.float64)
            ax.axvline(0.0, color="black", linewidth=0.8)
            for i, label in enumerate(labels):
                if not np.isfinite(diff[i]):
                    continue
                style, significant = board.styles[label], bool(np.isfinite(holm[i]) and holm[i] < ALPHA)
                ax.errorbar(diff[i], y[i], xerr=[[half[i]], [half[i]]], fmt=style.marker, color=style.color,
                            markerfacecolor=style.color if significant else "white", markersize=5, capsize=2,
                            elinewidth=1.0)
            ax.set_yticks(y, labels if j % MAX_PANELS == 0 else [""] * len(labels))
            ax.set_ylim(-0.7, len(labels) - 0.3)
            unit = metric_axis(metric)[0].rsplit(" (", 1)
            ax.set_xlabel(f"Δ {unit[0]}" + (" (pp)" if len(unit) == 2 and unit[1] == "%)" else ""))
            ax.grid(axis="x", alpha=0.3)
        for ax in axes:
            for tick in ax.get_yticklabels():
                tick.set_color(board.styles.get(tick.get_text(), None).color if tick.get_text() in board.styles
                               else "black")
        _significance_legend(fig, axes)
        against = sorted({str(b) for b in table.loc[labels, "baseline"] if b}) or [BASELINE]
        fig.suptitle(f"{dataset}: paired Δ vs {', '.join(against)} (mean ± 95 % CI over matched seeds)",
                     fontsize="medium")
        return save_figure(fig, path)


def _significance_legend(fig: Any, axes: list[Any]) -> None:
    """A legend of what the marker fill means (filled: significant after Holm), not of the configurations: their
    names are the y tick labels, in their colours."""
    from matplotlib.lines import Line2D

    handles = {f"Holm p < {ALPHA:g}": Line2D([], [], marker="o", linestyle="none", color="grey",
                                             markerfacecolor="grey"),
               f"Holm p ≥ {ALPHA:g} or n/a": Line2D([], [], marker="o", linestyle="none", color="grey",
                                                   markerfacecolor="white")}
    legend_outside(fig, axes, handles=handles)
