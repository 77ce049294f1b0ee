"""The long-tail groups section of a leaderboard: each classifier's accuracy on the many/medium/few-shot classes
(or, where a shot group is empty, as on CIFAR-10-LT with no class under 20 images, the head/mid/tail thirds), mean
± 95 % CI over seeds per cell, one table per dataset."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tempbench.eval import metric_label

from .render import _md_row, _pm
from .table import summarize_rows

CLASSIFIERS = ("knn200", "knn10", "linear", "fewshot", "fullshot")
SHOTS, THIRDS = ("many", "medium", "few"), ("head", "mid", "tail")


def group_columns(rows: pd.DataFrame) -> list[str]:
    """The group metrics these rows can show: shot groups when every one has values, else the thirds."""
    def present(col: str) -> bool:
        return col in rows and pd.to_numeric(rows[col], errors="coerce").notna().any()

    for groups in (SHOTS, THIRDS):
        cols = [f"{c}_{g}" for c in CLASSIFIERS for g in groups]
        if all(present(f"linear_{g}") for g in groups):
            return [c for c in cols if present(c)]
    return []


def format_groups(rows: pd.DataFrame, rulesets: Mapping[str, Any] | None = None) -> str:
    """The Markdown section (nothing when the rows hold no group metrics, e.g. image–text runs); `rulesets` labels
    the cells as the leaderboard does."""
    columns = group_columns(rows)
    if not columns:
        return ""
    summary = summarize_rows(rows, columns, rulesets=rulesets)
    lines = ["", "## Long-tail groups", "",
             "Accuracy on the classes of each group (many: > 100 training images, medium: 20–100, few: < 20; or the "
             "head/mid/tail thirds of the classes by count where a shot group is empty), mean ± 95 % CI over seeds.",
             ""]
    for dataset, table in summary.groupby("dataset", sort=True):
        shown = [c for c in columns if np.isfinite(table[f"{c}_mean"]).any()]
        lines += [f"### {dataset}", "", _md_row(["configuration", *(metric_label(c) for c in shown)]),
                  _md_row(["---"] * (len(shown) + 1))]
        for _, rec in table.iterrows():
            lines.append(_md_row([str(rec["label"]), *(_pm(rec[f"{c}_mean"], rec[f"{c}_ci95"]) for c in shown)]))
        lines.append("")
    return "\n".join(lines)
