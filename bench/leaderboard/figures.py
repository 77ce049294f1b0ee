"""Leaderboard figures, drawn after the tables are written (a figure that fails is a warning, never a lost table), each
as PNG and PDF, with one colour per strategy throughout (tempbench.figures.strategy_color):

    accuracy                     the first four metrics per dataset and configuration (bars, 95 % CI whiskers)
    groups_<dataset>             many/medium/few (or head/mid/tail) accuracy per configuration
    tau_<dataset>                final class-mean τ vs class size, seed spread, mean Spearman ρ
    class_accuracy_<dataset>     per-class kNN-200 / linear accuracy vs class size
    tau_classes_<dataset>        class-mean τ over epochs, one panel per per-sample-τ configuration
    tau_quantiles_<dataset>      the τ distribution (q10 … q90) at a few epochs
    tau_epochs_<dataset>         mean τ over epochs of every configuration (band: 95 % CI over seeds)
    training_<dataset>           training loss over epochs (and the validation kNN monitor where held out)
    fixed_tau_<dataset>          accuracy vs τ of the `fixed` cells that differ only in τ
    forest_<dataset>             paired Δ vs `fixed` with 95 % CIs per metric; filled: Holm p < 0.05

A figure these rows cannot draw (no per-sample strategy, no τ sweep, no baseline...) is skipped; figures.md lists
every figure with its caption, and every skipped one with the reason.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tempbench.figures import FigureWarning, cell_styles, figure, legend_outside, ordered_labels, save_figure, whiskers
from tempbench.util import slug, write_atomic

from . import classes, curves, deltas
from .plotdata import Board, Skip, metric_axis
from .stats import mean_ci

log = logging.getLogger("tempbench.leaderboard")
Builder = Callable[[Board, str, pd.DataFrame, Path], list[Path]]


ACCURACY_PANELS = 4


def save_bar_figure(table: pd.DataFrame, x_col: str, metrics: list[str], path: str | os.PathLike[str],
                    title: str = "", labels: Mapping[str, str] | None = None,
                    bounds: Mapping[str, tuple[float | None, float | None]] | None = None) -> list[Path]:
    """One panel per metric m: bars per `label` (a configuration, coloured by its `strategy` column when there is
    one), grouped by `x_col`, heights `<m>_mean`, whiskers `<m>_ci95` clipped at bounds[m] (none where NaN, e.g.
    one seed; no bar where the mean is NaN). `labels` are the axis labels. Returns the PNG and PDF paths."""
    labels, bounds = labels or {}, bounds or {}
    cells = dict(zip(table["label"], table["strategy"] if "strategy" in table else table["label"], strict=True))
    order, styles, xs = ordered_labels(cells), cell_styles(cells), list(dict.fromkeys(table[x_col]))
    width = 0.8 / max(1, len(order))
    with figure(len(metrics), width=max(3.0, 0.8 + 0.22 * len(xs) * len(order)), height=2.8, cols=2) as (fig, axes):
        for ax, metric in zip(axes, metrics, strict=True):
            lo, hi = bounds.get(metric, (None, None))
            for i, label in enumerate(order):
                sub = table[table["label"] == label].drop_duplicates(x_col).set_index(x_col).reindex(xs)
                mean, half = sub[f"{metric}_mean"].to_numpy(float), sub[f"{metric}_ci95"].to_numpy(float)
                ok = np.isfinite(mean)
                offsets = np.arange(len(xs))[ok] + (i - (len(order) - 1) / 2) * width
                ax.bar(offsets, mean[ok], width, label=label, **styles[label].bar())
                ax.hlines(mean[ok], offsets - width / 2, offsets + width / 2, color=styles[label].color,
                          linewidth=1.2, clip_on=False)  # a bar of height 0 still shows
                err = whiskers(mean[ok], mean[ok] - half[ok], mean[ok] + half[ok], (lo, hi))
                ax.errorbar(offsets, mean[ok], yerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
            ax.set_xticks(np.arange(len(xs)), [str(x) for x in xs])
            ax.set_ylabel(labels.get(metric, metric))
            ax.set_ylim(bottom=lo, top=hi)
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
        if title:
            fig.suptitle(title, fontsize="medium")
        legend_outside(fig, axes)
        return save_figure(fig, path)


def save_accuracy(board: Board, path: Path) -> list[Path]:
    """Bars of the first ACCURACY_PANELS metrics per dataset and configuration, whiskers 95 % CI over seeds."""
    metrics = board.metrics[:ACCURACY_PANELS]
    axes = {m: metric_axis(m) for m in metrics}
    return save_bar_figure(board.summary, "dataset", metrics, path, labels={m: a[0] for m, a in axes.items()},
                           bounds={m: a[1] for m, a in axes.items()})


def save_groups(board: Board, dataset: str, rows: pd.DataFrame, path: Path) -> list[Path]:
    """kNN-200 and linear accuracy per class group (many/medium/few, else head/mid/tail), bars per configuration,
    whiskers 95 % CI over seeds."""
    names = _group_names(rows)
    if not names:
        raise Skip("no class-group accuracies (linear_many/medium/few or linear_head/mid/tail) in these rows")
    out = []
    for label, sub in board.by_cell(rows):
        for g in names:
            rec: dict[str, Any] = {"label": label, "strategy": board.cells[label], "group": _group_title(g)}
            for proto in ("knn200", "linear"):
                col = f"{proto}_{g}"
                values = pd.to_numeric(sub[col], errors="coerce") if col in sub.columns else []
                rec[f"{proto}_mean"], rec[f"{proto}_ci95"], _ = mean_ci(values)
            out.append(rec)
    axes = {p: metric_axis(f"{p}_top1") for p in ("knn200", "linear")}
    return save_bar_figure(pd.DataFrame(out), "group", ["knn200", "linear"], path, title=f"{dataset}: accuracy "
                           "per class group", labels={p: a[0] for p, a in axes.items()},
                           bounds={p: a[1] for p, a in axes.items()})


def _group_names(rows: pd.DataFrame) -> list[str]:
    """many/medium/few when every shot group has a value for this dataset, else head/mid/tail, else nothing."""
    for names in (["many", "medium", "few"], ["head", "mid", "tail"]):
        cols = [f"linear_{g}" for g in names]
        if all(c in rows.columns and pd.to_numeric(rows[c], errors="coerce").notna().any() for c in cols):
            return names
    return []


def _group_title(group: str) -> str:
    """"many (>100)" from the registry's "linear many (>100)"."""
    label = metric_axis(f"linear_{group}")[0].removesuffix(" (%)")
    return label.removeprefix("linear ") if label.startswith("linear ") else group


PER_DATASET: tuple[tuple[str, str, Builder], ...] = (
    ("groups", "accuracy per class group (many/medium/few shots, or head/mid/tail thirds), mean ± 95 % CI over "
     "seeds", save_groups),
    ("tau", "final class-mean τ vs training images per class, per-sample-τ strategies: mean over seeds, bars "
     "min–max; legend: mean Spearman ρ (class-mean τ vs class size) over seeds", classes.save_tau_vs_frequency),
    ("class_accuracy", "per-class test accuracy (kNN-200, linear) vs training images per class: mean over seeds, "
     "bars min–max", classes.save_class_accuracy),
    ("tau_classes", "class-mean τ over epochs, one panel per per-sample-τ configuration, colour: class size",
     curves.save_tau_classes),
    ("tau_quantiles", "distribution of the per-sample τ at a few epochs: box q25–q75, line median, whiskers "
     "q10–q90, dots min/max (each averaged over seeds)", curves.save_tau_quantiles),
    ("tau_epochs", "mean τ over all training samples at the end of each epoch (a schedule with a period under "
     "an epoch is aliased), mean over seeds, band 95 % CI",
     curves.save_tau_epochs),
    ("training", "training loss per epoch (each configuration on its own scale), mean over seeds, band 95 % CI; "
     "validation kNN monitor where a slice was held out", curves.save_training),
    ("fixed_tau", "accuracy vs τ of the `fixed` configurations that differ only in τ, mean ± 95 % CI over seeds; "
     "dashed: the other configurations with the same run settings", deltas.save_fixed_tau),
    ("forest", "paired Δ against the `fixed` baseline per metric, mean ± 95 % CI over matched seeds; filled "
     "markers: Holm-corrected p < 0.05", deltas.save_forest),
)


def save_leaderboard_figures(rows: pd.DataFrame, summary: pd.DataFrame, metrics: list[str],
                             out_dir: Path) -> list[Path]:
    """Every figure these rows can draw (PNG + PDF each) and figures.md, the list of figures with captions and of
    the skipped ones with their reasons. A figure that fails is a FigureWarning; the others are still drawn."""
    board = Board.of(rows, summary, metrics)
    files: list[Path] = []
    notes: dict[str, list[str]] = {}

    def attempt(section: str, name: str, caption: str, draw: Callable[[], list[Path]]) -> None:
        try:
            files.extend(written := draw())
            notes.setdefault(section, []).append(f"- {' / '.join(f'`{p.name}`' for p in written)} — {caption}")
        except Skip as skip:
            log.info("figure %s skipped: %s", name, skip)
            notes.setdefault(section, []).append(f"- skipped `{name}`: {skip}")
        except Exception as exc:  # one figure must never cost the others
            warnings.warn(f"figure {out_dir / name} failed: {type(exc).__name__}: {exc}", FigureWarning,
                          stacklevel=3)
            notes.setdefault(section, []).append(f"- failed `{name}`: {type(exc).__name__}: {exc}")

    shown = ", ".join(metric_axis(m)[0] for m in metrics[:ACCURACY_PANELS])
    attempt("all datasets", "accuracy", f"{shown} per dataset and configuration, mean ± 95 % CI over seeds",
            lambda: save_accuracy(board, out_dir / "accuracy.png"))
    for dataset, group in board.rows.groupby("dataset", sort=True):
        for stem, caption, build in PER_DATASET:
            name = f"{stem}_{slug(dataset)}"
            attempt(str(dataset), name, caption,
                    lambda build=build, dataset=dataset, group=group, name=name:
                    build(board, str(dataset), group, out_dir / f"{name}.png"))
    text = "\n".join(["# Figures", "", "Each figure is a PNG (200 dpi) and a PDF; one colour per strategy in all of "
                      "them. Seeds: the rows of one configuration cell (config_hash).", "",
                      *(line for section, lines in notes.items() for line in (f"## {section}", "", *lines, ""))])
    files.append(write_atomic(out_dir / "figures.md", lambda fh: fh.write(text)))
    return files
