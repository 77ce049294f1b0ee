"""Leaderboard figures, drawn after the tables are written (a figure that fails is a warning, never a lost table):
accuracy per configuration, long-tail group bars, and class-mean τ against class frequency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tempbench.eval import metric_label
from tempbench.figures import save_bar_figure, save_curves_figure
from tempbench.text import slug

from .stats import mean_ci


def save_leaderboard_figures(rows: pd.DataFrame, summary: pd.DataFrame, metrics: list[str],
                             out_dir: Path) -> list[Path]:
    """accuracy.png (the first two metrics per dataset and configuration, CI bars), groups_<dataset>.png
    (many/medium/few, or head/mid/tail where a shot group is empty) and tau_<dataset>.png (class-mean τ vs class
    count, where rows carry tau_by_class and class_counts)."""
    labels = dict(zip(summary["cell"], summary["label"]))
    rows = rows.assign(label=rows["config_hash"].astype(str).map(labels))
    files = [save_bar_figure(summary, "dataset", metrics[:2], out_dir / "accuracy.png",
                             labels={m: metric_label(m) for m in metrics})]
    for dataset, group in rows.groupby("dataset", sort=True):
        names = _group_names(group)
        if names:
            table = _group_summary(group, names)
            files.append(save_bar_figure(table, "group", ["knn200", "linear"], out_dir / f"groups_{slug(dataset)}.png",
                                         title=str(dataset), labels={"knn200": "kNN-200 top-1",
                                                                     "linear": "linear top-1"}))
        tau = _tau_by_label(group)
        if tau:
            files.append(save_curves_figure(tau, out_dir / f"tau_{slug(dataset)}.png", title=str(dataset)))
    return files


def _group_names(rows: pd.DataFrame) -> list[str]:
    """many/medium/few when every shot group has a value for this dataset, else head/mid/tail, else nothing."""
    for names in (["many", "medium", "few"], ["head", "mid", "tail"]):
        cols = [f"linear_{g}" for g in names]
        if all(c in rows.columns and pd.to_numeric(rows[c], errors="coerce").notna().any() for c in cols):
            return names
    return []


def _group_summary(rows: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    out = []
    for label, sub in rows.groupby("label", sort=True):
        for g in names:
            rec: dict[str, Any] = {"label": label, "group": g}
            for proto in ("knn200", "linear"):
                col = f"{proto}_{g}"
                values = pd.to_numeric(sub[col], errors="coerce") if col in sub.columns else []
                rec[f"{proto}_mean"], rec[f"{proto}_ci95"], _ = mean_ci(values)
            out.append(rec)
    return pd.DataFrame(out)


def _tau_by_label(rows: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """label -> (class counts, class-mean τ averaged over seeds) from the JSON columns, where present."""
    if "tau_by_class" not in rows.columns or "class_counts" not in rows.columns:
        return {}
    out = {}
    for label, sub in rows.groupby("label", sort=True):
        sub = sub[sub["tau_by_class"].notna() & sub["class_counts"].notna()]
        if sub.empty:
            continue
        taus = np.array([_json_floats(v, "tau_by_class") for v in sub["tau_by_class"]], dtype=np.float64)
        counts = np.asarray(_json_floats(sub["class_counts"].iloc[0], "class_counts"), dtype=np.float64)
        if taus.ndim != 2 or taus.shape[1] != counts.size:
            raise ValueError(f"{label}: tau_by_class lists must all have one entry per class ({counts.size})")
        seen = (~np.isnan(taus)).sum(axis=0)
        out[str(label)] = (counts, np.where(seen > 0, np.nansum(taus, axis=0) / np.maximum(seen, 1), np.nan))
    return out


def _json_floats(text: Any, column: str) -> list[float]:
    try:
        values = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {column!r} must hold a JSON list of numbers, got {text!r}") from exc
    return [float("nan") if v is None else float(v) for v in values]
