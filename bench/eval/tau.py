"""τ analytics for per-sample strategies (iSogCLR: Qiu et al., "Not All Semantics are Created Equal: Contrastive
Self-supervised Learning with Automatic Temperature Individualization", ICML 2023): how the learned τ_i distribute
over classes, and whether rare classes get different temperatures from frequent ones (Spearman correlation of
class-mean τ with class frequency)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

QUANTILES = (10, 25, 50, 75, 90)


def summarize_tau(tau: Any, train_labels: Any, class_counts: Any) -> dict[str, Any]:
    """Per-class τ statistics and their rank correlation with class frequency.

    tau: (N,) per-sample temperatures; train_labels: (N,) class indices; class_counts: (C,) training images per class.
    Returns {"table": DataFrame (one row per class: class, count, n_tau, mean, q10 … q90; NaN where a class has no
    τ), "spearman": Spearman ρ of class-mean τ vs count (NaN with < 2 classes or a constant side),
    "spearman_p": its p-value}.
    """
    import pandas as pd  # imported here: the training path must run where only torch and numpy are installed

    tau, labels = _as_flat(tau, "tau"), _as_flat(train_labels, "train_labels").astype(np.int64)
    counts = _as_flat(class_counts, "class_counts")
    if tau.size != labels.size:
        raise ValueError(f"tau has {tau.size} entries but train_labels has {labels.size}")
    if labels.size and (labels.min() < 0 or labels.max() >= counts.size):
        raise ValueError(f"train_labels must lie in [0, {counts.size}) (the length of class_counts)")
    table = pd.DataFrame([_class_row(c, counts[c], tau[labels == c]) for c in range(counts.size)])
    rho, p = class_spearman(table["mean"].to_numpy(), counts)
    return {"table": table, "spearman": rho, "spearman_p": p}


def class_spearman(class_means: np.ndarray, class_counts: np.ndarray) -> tuple[float, float]:
    """(ρ, p) of scipy.stats.spearmanr over classes with a finite mean; (NaN, NaN) where undefined (fewer than two
    classes, or constant τ or counts: a global-τ strategy has no correlation to report)."""
    keep = np.isfinite(class_means)
    x, y = class_means[keep], np.asarray(class_counts, dtype=np.float64)[keep]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    from scipy import stats

    res = stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def tau_row_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """The result-row columns from a summary: tau_spearman (float) and tau_by_class (JSON list, null for NaN)."""
    means = [None if not np.isfinite(m) else float(m) for m in summary["table"]["mean"]]
    return {"tau_spearman": summary["spearman"], "tau_by_class": json.dumps(means)}


def save_tau_figure(summary: dict[str, Any], path: str | os.PathLike[str], title: str = "",
                    strategy: str | None = None) -> Path:
    """Write each class's median τ with its interquartile range against training images per class (log x) as a PNG
    at `path` and a PDF beside it, each atomically; returns the PNG's path. The median, not the mean, sits inside
    its own [q25, q75] however τ piles up at a bound, so the bars are always well defined. The colour is the
    strategy's (tempbench.figures.strategy_color; by default the title's first word names the strategy)."""
    from tempbench.figures import figure, legend_outside, log_count_axis, save_figure, strategy_color, whiskers

    t = summary["table"].dropna(subset=["q50"])  # classes with no τ at all have no median to draw
    name = strategy or (title.split()[0] if title.split() else "")
    with figure(1, width=4.6, height=3.3) as (fig, (ax,)):
        err = whiskers(t["q50"], t["q25"], t["q75"], (0.0, None))
        ax.errorbar(t["count"], t["q50"], yerr=err, fmt="o", color=strategy_color(name), markersize=4, capsize=2,
                    elinewidth=0.9, label="class median τ\n(bars: q25–q75)")
        log_count_axis(ax, t["count"] if len(t) else summary["table"]["count"])
        ax.set_ylabel("per-sample τ")
        ax.grid(alpha=0.3)
        rho = summary["spearman"]
        rho_text = f"Spearman ρ (class-mean τ vs class size) = {rho:+.2f}" if np.isfinite(rho) else \
            "Spearman ρ undefined (constant τ or class sizes)"
        fig.suptitle(f"{title}\n{rho_text}".strip(), fontsize="medium")
        legend_outside(fig, [ax])
        return save_figure(fig, path)[0]


def _class_row(c: int, count: float, values: np.ndarray) -> dict[str, float]:
    q = np.percentile(values, QUANTILES) if values.size else np.full(len(QUANTILES), np.nan)
    mean = float(values.mean()) if values.size else float("nan")
    return {"class": c, "count": float(count), "n_tau": int(values.size), "mean": mean,
            **{f"q{p}": float(v) for p, v in zip(QUANTILES, q, strict=True)}}


def _as_flat(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr
