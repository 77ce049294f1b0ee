"""What the leaderboard figures read from result rows: the JSON columns (class counts, per-class lists, per-epoch
history), seeds stacked per configuration cell, metric axes from the registry, and one style per cell."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tempbench.eval import get_metric, list_metrics, metric_label
from tempbench.figures import Style, cell_styles, ordered_labels

from .stats import mean_ci


class Skip(Exception):  # not an error: the rows lack what this figure needs
    """A figure that these rows cannot draw; the message says what is missing."""


def metric_axis(name: str) -> tuple[str, tuple[float | None, float | None]]:
    """(axis label, axis bounds) of a metric from the registry: "kNN-200 top-1 (%)" and (0, 100) for a percentage;
    a column nobody declared keeps its name and no bounds."""
    if name not in {m.name for m in list_metrics()}:
        return metric_label(name), (None, None)
    metric = get_metric(name)
    return metric.axis_label(), ((0.0, 100.0) if metric.unit == "%" else (None, None))


def json_list(value: Any) -> list[float] | None:
    """A JSON list of numbers (null -> NaN); None for an empty cell ("", NaN) or anything that is not such a list."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    if not isinstance(parsed, list) or not all(v is None or isinstance(v, (int, float)) for v in parsed):
        return None
    return [float("nan") if v is None else float(v) for v in parsed]


def history(value: Any) -> list[dict[str, Any]]:
    """The per-epoch dicts of a row's `history` column ([] where there is none)."""
    if not isinstance(value, str) or not value:
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        return []
    return [h for h in parsed if isinstance(h, dict)] if isinstance(parsed, list) else []


def stack(lists: list[list[float]]) -> np.ndarray:
    """(rows, longest) float array, NaN-padded: seeds of unequal length (an interrupted history) still stack."""
    width = max((len(x) for x in lists), default=0)
    out = np.full((len(lists), width), np.nan)
    for i, x in enumerate(lists):
        out[i, :len(x)] = x
    return out


def seed_ci(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of (seeds, n): mean, and the 95 % Student-t interval's ends (NaN ends with one seed)."""
    stats = [mean_ci(matrix[:, j]) for j in range(matrix.shape[1])]
    mean = np.array([s[0] for s in stats])
    half = np.array([s[1] for s in stats])
    return mean, mean - half, mean + half


def seed_range(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of (seeds, n): mean, min and max over the finite values (NaN where a column has none)."""
    finite = np.isfinite(matrix)
    seen = finite.sum(axis=0)
    safe = np.where(finite, matrix, 0.0)
    mean = np.where(seen > 0, safe.sum(axis=0) / np.maximum(seen, 1), np.nan)
    low = np.where(seen > 0, np.where(finite, matrix, np.inf).min(axis=0), np.nan)
    high = np.where(seen > 0, np.where(finite, matrix, -np.inf).max(axis=0), np.nan)
    return mean, low, high


@dataclass
class Board:
    """The rows and summary of one leaderboard with what every figure shares: cell labels and styles."""

    rows: pd.DataFrame  # check_rows output, plus `label`
    summary: pd.DataFrame
    metrics: list[str]
    cells: dict[str, str] = field(default_factory=dict)  # label -> strategy
    styles: dict[str, Style] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: pd.DataFrame, summary: pd.DataFrame, metrics: list[str]) -> Board:
        """The board of `summarize_rows`' summary: every row labelled with its cell's label (via config_hash), and
        one style per cell, fixed here so that a configuration looks the same in every figure."""
        labels = dict(zip(summary["cell"].astype(str), summary["label"], strict=True))
        rows = rows.assign(label=rows["config_hash"].astype(str).map(labels))
        cells = dict(zip(summary["label"], summary["strategy"], strict=True))
        return cls(rows, summary, metrics, cells, cell_styles(cells))

    def order(self, labels: Any) -> list[str]:
        """`labels` in the figures' order: strategies in palette order, variants sorted."""
        wanted = set(labels)
        return [lb for lb in ordered_labels(self.cells) if lb in wanted]

    def by_cell(self, rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
        """(label, that cell's rows) in figure order."""
        groups = dict(list(rows.groupby("label", sort=False)))
        return [(label, groups[label]) for label in self.order(groups)]

    def class_counts(self, rows: pd.DataFrame) -> np.ndarray:
        """The training images per class of these rows (the mean over rows, should long-tailed subsets differ)."""
        lists = [x for x in map(json_list, rows.get("class_counts", pd.Series(dtype=object))) if x]
        if not lists or len({len(x) for x in lists}) != 1:
            raise Skip("the rows hold no (consistent) class_counts")
        return np.nanmean(np.array(lists), axis=0)

    def per_class(self, rows: pd.DataFrame, column: str, classes: int) -> np.ndarray | None:
        """(seeds, classes) of a per-class JSON column, rows without a list of `classes` entries left out; None
        when no row has one."""
        if column not in rows.columns:
            return None
        lists = [x for x in map(json_list, rows[column]) if x is not None and len(x) == classes]
        return np.array(lists) if lists else None

    def histories(self, rows: pd.DataFrame) -> list[list[dict[str, Any]]]:
        """The non-empty histories of these rows."""
        if "history" not in rows.columns:
            return []
        return [h for h in map(history, rows["history"]) if h]

    def per_sample(self, rows: pd.DataFrame) -> bool:
        """Whether this cell learns a τ per sample: its rows carry the final class-mean τ (`tau_by_class`, empty
        for global-τ strategies) or, failing that column, their per-epoch class means differ between classes."""
        if "tau_by_class" in rows.columns and any(json_list(v) for v in rows["tau_by_class"]):
            return True
        for hist in self.histories(rows):
            for epoch in hist:
                values = json_list(epoch.get("tau_by_class"))
                if values and np.nanmax(values) - np.nanmin(values) > 1e-9 * max(1.0, abs(np.nanmax(values))):
                    return True
        return False


def history_matrix(hists: list[list[dict[str, Any]]], key: str) -> np.ndarray:
    """(seeds, epochs) of one per-epoch number (NaN where an epoch lacks it)."""
    return stack([[float(e[key]) if isinstance(e.get(key), (int, float)) else np.nan for e in h] for h in hists])
