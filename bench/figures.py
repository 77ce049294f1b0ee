"""Figures shared by every wing (PNG, matplotlib's Agg backend), each written atomically: bars with confidence
intervals, and curves against class frequency. matplotlib is imported inside the functions: it is optional for
the training path, and selecting the Agg backend must happen before pyplot is imported."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def save_bar_figure(table: pd.DataFrame, x_col: str, metrics: list[str], path: str | os.PathLike[str],
                    title: str = "", labels: Mapping[str, str] | None = None) -> Path:
    """One panel per metric m: bars per `label` (a configuration), grouped by `x_col`, heights `<m>_mean`, error
    bars `<m>_ci95` (none where NaN, e.g. one seed). `labels` names the metrics on the axes."""
    plt = pyplot_agg()
    labels = labels or {}
    strategies, xs = sorted(table["label"].unique()), list(dict.fromkeys(table[x_col]))
    width = 0.8 / max(1, len(strategies))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3 + 1.2 * len(xs) * len(metrics), 3.5), squeeze=False)
    try:
        for ax, metric in zip(axes[0], metrics, strict=True):
            for i, strategy in enumerate(strategies):
                sub = table[table["label"] == strategy].set_index(x_col).reindex(xs)
                offsets = np.arange(len(xs)) + (i - (len(strategies) - 1) / 2) * width
                ax.bar(offsets, sub[f"{metric}_mean"].fillna(0.0).to_numpy(), width,
                       yerr=sub[f"{metric}_ci95"].fillna(0.0).to_numpy(), capsize=2, label=strategy)
            ax.set_xticks(np.arange(len(xs)), [str(x) for x in xs])
            ax.set_ylabel(f"{labels.get(metric, metric)} (%)")
            ax.set_title(f"{title} {labels.get(metric, metric)}".strip())
        axes[0][-1].legend(fontsize="small", loc="lower right")
        fig.tight_layout()
        return save_figure_atomic(fig, path)
    finally:
        plt.close(fig)


def save_curves_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike[str],
                       title: str = "", ylabel: str = "class-mean τ (mean over seeds)") -> Path:
    """One line per name: y against training images per class (log x); curves: name -> (counts (C,), y (C,))."""
    plt = pyplot_agg()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    try:
        for name, (counts, values) in curves.items():
            order = np.argsort(counts, kind="stable")
            ax.plot(np.asarray(counts)[order], np.asarray(values)[order], "o-", markersize=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("training images per class")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize="small")
        fig.tight_layout()
        return save_figure_atomic(fig, path)
    finally:
        plt.close(fig)


def save_figure_atomic(fig: Any, path: str | os.PathLike[str]) -> Path:
    """fig.savefig as PNG, written atomically onto `path`."""
    from tempbench.datasets.files import write_atomic

    return write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=120), text=False)


def pyplot_agg() -> Any:
    """pyplot on the non-interactive Agg backend (headless machines, no GUI warnings in tests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
