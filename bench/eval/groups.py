"""Long-tail group metrics: per-class accuracy, many/medium/few shot (Liu et al., "Large-Scale Long-Tailed
Recognition in an Open World", CVPR 2019: > 100, 20–100, < 20 training images) and head/mid/tail thirds of the class
list for datasets with few classes. A group's accuracy is the mean over its test samples; NaN when it has none."""

from __future__ import annotations

from typing import Any

import numpy as np

MANY_MIN, FEW_MAX = 100, 20  # many: count > 100; few: count < 20; medium: 20 ≤ count ≤ 100


def per_class_accuracy(pred: Any, labels: Any, num_classes: int) -> np.ndarray:
    """(C,) accuracy in percent of each class over its test samples (NaN for a class without test samples)."""
    pred, labels = np.asarray(pred).reshape(-1), np.asarray(labels).reshape(-1)
    correct = np.bincount(labels, weights=(pred == labels).astype(np.float64), minlength=num_classes)
    total = np.bincount(labels, minlength=num_classes)
    return np.where(total > 0, 100.0 * correct / np.maximum(total, 1), np.nan)


def shot_groups(class_counts: Any) -> dict[str, np.ndarray]:
    """{"many", "medium", "few"} -> sorted class indices, by training count (> 100, 20–100, < 20)."""
    counts = np.asarray(class_counts)
    return {"many": np.flatnonzero(counts > MANY_MIN),
            "medium": np.flatnonzero((counts >= FEW_MAX) & (counts <= MANY_MIN)),
            "few": np.flatnonzero(counts < FEW_MAX)}


def third_groups(class_counts: Any) -> dict[str, np.ndarray]:
    """{"head", "mid", "tail"} -> class indices: thirds of the classes ordered by training count descending (equal
    counts: lower class index first). When C is not divisible by 3 the extra classes go to head, then mid
    (C = 10 -> 4/3/3, C = 11 -> 4/4/3)."""
    counts = np.asarray(class_counts)
    order = np.lexsort((np.arange(counts.size), -counts))  # count descending, then class index ascending
    base, extra = divmod(counts.size, 3)
    sizes = [base + (extra >= 1), base + (extra >= 2), base]
    bounds = np.cumsum([0, *sizes])
    return {name: np.sort(order[bounds[i]:bounds[i + 1]]) for i, name in enumerate(("head", "mid", "tail"))}


def group_accuracy(pred: Any, labels: Any, classes: np.ndarray) -> float:
    """Accuracy (%) over the test samples whose label is in `classes`; NaN when there are none."""
    pred, labels = np.asarray(pred).reshape(-1), np.asarray(labels).reshape(-1)
    member = np.isin(labels, classes)
    return float(100.0 * np.mean(pred[member] == labels[member])) if member.any() else float("nan")


def group_metrics(pred: Any, labels: Any, class_counts: Any) -> dict[str, float]:
    """{many, medium, few, head, mid, tail} -> accuracy (%) of predictions (Q,) against labels (Q,)."""
    groups = {**shot_groups(class_counts), **third_groups(class_counts)}
    return {name: group_accuracy(pred, labels, classes) for name, classes in groups.items()}
