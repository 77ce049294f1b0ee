"""Leaderboard figures over training epochs, from each row's `history` (one dict per epoch): class-mean τ per class
(per-sample-τ strategies), the τ distribution at a few epochs (the logged quantiles), the mean τ of every
configuration on one axis, and the training loss (and validation kNN monitor). Seeds: mean, band 95 % CI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tempbench.figures import count_ticks, dodge, figure, legend_outside, save_figure

from .plotdata import Board, Skip, history_matrix, json_list, metric_axis, seed_ci, seed_range, stack

QUANTILE_KEYS = ("tau_min", "tau_q10", "tau_q25", "tau_q50", "tau_q75", "tau_q90", "tau_max")
SNAPSHOTS = 4  # epochs shown by the τ-distribution figure


def _epoch_axis(ax: Any, epochs: int) -> None:
    """An x-axis of epochs 1 … `epochs`: integer ticks only, a little room either side."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.set_xlim(0.7, max(epochs, 1) + 0.3)


def _band(ax: Any, board: Board, label: str, matrix: np.ndarray, legend: str | None = None) -> None:
    """Mean over seeds (rows of `matrix`) with its 95 % CI as a band (none with one seed)."""
    mean, low, high = seed_ci(matrix)
    epochs = np.arange(1, matrix.shape[1] + 1)
    style = board.styles[label]
    ax.plot(epochs, mean, color=style.color, linestyle=style.linestyle, marker=style.marker, markersize=3,
            linewidth=1.2, label=legend or label)
    if np.isfinite(low).any():
        ax.fill_between(epochs, low, high, color=style.color, alpha=0.18, linewidth=0)


def _per_sample_cells(board: Board, rows: pd.DataFrame) -> list[tuple[str, list[list[dict[str, Any]]]]]:
    """(label, its seeds' histories) of the per-sample-τ cells that logged a history."""
    return [(label, hists) for label, sub in board.by_cell(rows)
            if board.per_sample(sub) and (hists := board.histories(sub))]


def save_tau_classes(board: Board, dataset: str, rows: pd.DataFrame, path: Path) -> list[Path]:
    """Class-mean τ over epochs (history `tau_by_class`: (epochs, C) per seed, averaged over seeds), one panel per
    per-sample-τ configuration, each class a line coloured by its size on a shared log colour bar: whether rare
    and frequent classes drift apart during training, not only at its end."""
    found = []
    for label, hists in _per_sample_cells(board, rows):
        seeds = [stack([json_list(e.get("tau_by_class")) or [] for e in h]) for h in hists]  # (epochs, C) each
        counts = board.class_counts(rows[rows["label"] == label])
        seeds = [s for s in seeds if s.shape[1] == counts.size and np.isfinite(s).any()]
        if seeds:
            epochs = max(s.shape[0] for s in seeds)
            padded = np.stack([np.pad(s, ((0, epochs - s.shape[0]), (0, 0)), constant_values=np.nan) for s in seeds])
            mean = seed_range(padded.reshape(len(seeds), -1))[0].reshape(epochs, counts.size)
            found.append((label, mean, counts, len(seeds)))
    if not found:
        raise Skip("no per-sample-τ configuration whose history holds tau_by_class on this dataset")
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    all_counts = np.concatenate([f[2] for f in found])
    # vmax nudged up so that vmin < vmax even when every class has the same size: a colour bar needs a range
    norm = LogNorm(vmin=max(float(all_counts.min()), 1.0), vmax=max(float(all_counts.max()), 1.0) * 1.0001)
    cmap = colormaps["viridis"]
    with figure(len(found), width=3.6, height=3.0, cols=3) as (fig, axes):
        for ax, (label, mean, counts, seeds) in zip(axes, found, strict=True):
            epochs = mean.shape[0]
            for c in np.argsort(counts, kind="stable"):
                ax.plot(np.arange(1, epochs + 1), mean[:, c], color=cmap(norm(counts[c])), linewidth=1.0)
            _epoch_axis(ax, epochs)
            ax.set_ylabel("class-mean τ")
            ax.set_title(f"{label} ({seeds} seeds)", fontsize="small", color=board.styles[label].color)
            ax.grid(alpha=0.3)
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, location="right", shrink=0.9)
        bar.set_label("training images per class")
        count_ticks(bar.ax.yaxis, norm.vmin, norm.vmax)
        fig.suptitle(f"{dataset}: class-mean τ over epochs (mean over seeds)", fontsize="medium")
        return save_figure(fig, path)


def snapshot_epochs(epochs: int, count: int = SNAPSHOTS) -> list[int]:
    """Up to `count` epochs (1-based) spread from the first to the last."""
    return sorted({round(e) for e in np.linspace(1, epochs, min(count, epochs))}) if epochs else []


def save_tau_quantiles(board: Board, dataset: str, rows: pd.DataFrame, path: Path) -> list[Path]:
    """The distribution of the per-sample τ (the logged min, q10 … q90, max; each averaged over seeds) at up to
    SNAPSHOTS epochs, configurations side by side: whether τ individualises or collapses onto a bound."""
    found = []
    for label, hists in _per_sample_cells(board, rows):
        q = {key: history_matrix(hists, key) for key in QUANTILE_KEYS}
        if all(np.isfinite(m).any() for m in q.values()):
            found.append((label, {key: seed_range(m)[0] for key, m in q.items()}))
    if not found:
        raise Skip("no per-sample-τ configuration whose history logs the τ quantiles (tau_q10 … tau_q90) here")
    epochs = snapshot_epochs(max(len(f[1]["tau_q50"]) for f in found))
    width = 0.7 / len(found)
    with figure(1, width=max(4.0, 1.1 * len(epochs) * max(1, len(found)) ** 0.5), height=3.4) as (fig, (ax,)):
        for i, (label, q) in enumerate(found):
            style = board.styles[label]
            x = dodge(np.arange(len(epochs), dtype=float), i, len(found), 0.7)
            pick = [e - 1 for e in epochs]

            def at(key: str, q: dict[str, np.ndarray] = q, pick: list[int] = pick) -> np.ndarray:
                return np.array([q[key][p] if p < len(q[key]) else np.nan for p in pick])

            ax.bar(x, at("tau_q75") - at("tau_q25"), width * 0.85, bottom=at("tau_q25"), color=style.color,
                   alpha=0.35, edgecolor=style.color, hatch=style.hatch, label=label)
            ax.vlines(np.r_[x, x], np.r_[at("tau_q10"), at("tau_q75")], np.r_[at("tau_q25"), at("tau_q90")],
                      color=style.color, linewidth=1.0)  # whiskers outside the box
            ax.hlines(at("tau_q50"), x - width * 0.42, x + width * 0.42, color=style.color, linewidth=2.0)
            ax.plot(x, at("tau_min"), linestyle="none", marker=".", color=style.color, markersize=3)
            ax.plot(x, at("tau_max"), linestyle="none", marker=".", color=style.color, markersize=3)
        ax.set_xticks(np.arange(len(epochs)), [f"epoch {e}" for e in epochs])
        ax.set_ylabel("per-sample τ")
        ax.set_ylim(bottom=0.0)
        ax.grid(axis="y", alpha=0.3)
        fig.suptitle(f"{dataset}: τ distribution over training samples\n(box q25–q75, line median, whiskers "
                     "q10–q90, dots min/max; mean over seeds)", fontsize="medium")
        legend_outside(fig, [ax])
        return save_figure(fig, path)


def save_tau_epochs(board: Board, dataset: str, rows: pd.DataFrame, path: Path) -> list[Path]:
    """Mean τ over the training samples at each epoch's end, every configuration on one axis (log y when the
    values span more than a decade), band 95 % CI over seeds."""
    found = [(label, m) for label, sub in board.by_cell(rows)
             if np.isfinite(m := history_matrix(board.histories(sub), "tau_mean")).any()]
    if not found:
        raise Skip("the rows' history logs no tau_mean per epoch")
    with figure(1, width=5.0, height=3.4) as (fig, (ax,)):
        for label, matrix in found:
            _band(ax, board, label, matrix)
        _epoch_axis(ax, max(m.shape[1] for _, m in found))
        values = np.concatenate([m[np.isfinite(m)] for _, m in found])
        if values.min() > 0 and values.max() / values.min() > 10:
            ax.set_yscale("log")
            count_ticks(ax.yaxis, *ax.get_ylim())
        ax.set_ylabel("mean τ over training samples")
        ax.grid(alpha=0.3)
        fig.suptitle(f"{dataset}: τ over training (mean over seeds, band 95 % CI)", fontsize="medium")
        legend_outside(fig, [ax])
        return save_figure(fig, path)


def save_training(board: Board, dataset: str, rows: pd.DataFrame, path: Path) -> list[Path]:
    """Training loss per epoch, one panel per configuration — losses of different strategies are different
    objectives on different scales, so they are never drawn on one axis — plus, where a slice was held out, one
    panel of the validation kNN monitor of every configuration (that one is comparable)."""
    cells = [(label, board.histories(sub)) for label, sub in board.by_cell(rows)]
    loss = [(label, m) for label, hists in cells if np.isfinite(m := history_matrix(hists, "loss")).any()]
    monitor = [(label, m) for label, hists in cells if np.isfinite(m := history_matrix(hists, "knn_monitor")).any()]
    if not loss:
        raise Skip("the rows' history logs no training loss per epoch")
    panels = len(loss) + bool(monitor)
    with figure(panels, width=3.0, height=2.3, cols=min(4, panels)) as (fig, axes):
        if monitor:
            ax = axes[0]
            for label, matrix in monitor:
                _band(ax, board, label, matrix)
            _epoch_axis(ax, max(m.shape[1] for _, m in monitor))
            ax.set_ylabel(f"val {metric_axis('knn200_top1')[0]}")
            ax.set_title("validation kNN monitor", fontsize="small")
            ax.grid(alpha=0.3)
        cols = min(4, panels)
        for k, (ax, (label, matrix)) in enumerate(zip(axes[bool(monitor):], loss, strict=True), start=bool(monitor)):
            _band(ax, board, label, matrix)
            _epoch_axis(ax, matrix.shape[1])
            ax.set_xlabel("epoch" if k + cols >= panels else "")  # on the bottom panel of each column only
            ax.set_ylabel("training loss" if k % cols == 0 else "")
            ax.set_title(label, fontsize="small", color=board.styles[label].color)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{dataset}: training loss per epoch (each configuration's own objective and scale; mean over "
                     "seeds, band 95 % CI)", fontsize="medium")
        if monitor:
            legend_outside(fig, axes[:1])
        return save_figure(fig, path)
