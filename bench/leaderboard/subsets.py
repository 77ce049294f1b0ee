"""Variance over long-tailed subsets (SDCLR style) as its own component: configurations that differ only in
`subset_seed` are one group; per metric, the spread of their cell means across subsets is set beside the seed
spread within a subset.

between-subset sd = the sample standard deviation of the per-subset means (each a mean over seeds);
within-subset sd = the pooled seed standard deviation, sqrt(mean over subsets of each subset's seed variance).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd

from .table import cell_settings, check_rows

SUBSET_KEY = "subset_seed"


def subset_groups(rows: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(dataset, settings without subset_seed) -> the config hashes of its cells, for groups of ≥ 2 subsets."""
    settings = cell_settings(rows)
    groups: dict[tuple[str, str], list[str]] = {}
    for (dataset, cell), _ in rows.groupby(["dataset", "config_hash"], sort=True):
        rest = {k: v for k, v in settings[cell].items() if k != SUBSET_KEY}
        groups.setdefault((dataset, json.dumps(rest, sort_keys=True, default=str)), []).append(cell)
    return {k: v for k, v in groups.items() if len(v) >= 2}


def subset_variance(rows: pd.DataFrame, summary: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per group of ≥ 2 subsets: dataset, label, subsets, and per metric <m>_mean (over subsets),
    <m>_between_sd and <m>_within_sd; empty when no configuration was run on several subsets."""
    rows = check_rows(rows, metrics)
    labels = dict(zip(summary["cell"], summary["label"]))
    out = []
    for (dataset, _), cells in subset_groups(rows).items():
        rec: dict[str, Any] = {"dataset": dataset, "label": _without_subset(labels[cells[0]]), "subsets": len(cells)}
        for m in metrics:
            per_cell = [pd.to_numeric(rows.loc[rows["config_hash"] == c, m]).dropna().to_numpy() for c in cells]
            means = np.array([v.mean() for v in per_cell if v.size])
            variances = [v.var(ddof=1) for v in per_cell if v.size >= 2]
            rec[f"{m}_mean"] = float(means.mean()) if means.size else float("nan")
            rec[f"{m}_between_sd"] = float(means.std(ddof=1)) if means.size >= 2 else float("nan")
            rec[f"{m}_within_sd"] = float(np.sqrt(np.mean(variances))) if variances else float("nan")
        out.append(rec)
    return pd.DataFrame(out)


def _without_subset(label: str) -> str:
    cleaned = re.sub(r"(, )?subset_seed=\d+", "", label).replace("(, ", "(").replace(" ()", "")
    return cleaned
