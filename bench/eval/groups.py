"""Long-tail group metrics: per-class accuracy, and accuracy over the many/medium/few-shot classes and the
head/mid/tail thirds that `tempbench.datasets.class_groups` defines (the one home of those rules). A group's
accuracy is the mean over its test samples; NaN when it has none."""

from __future__ import annotations

from typing import Any

import numpy as np

from tempbench.datasets import class_groups

# many/medium/few: > 100, 20–100, < 20 training images (Liu et al., "Large-Scale Long-Tailed Recognition in an Open
# World", CVPR 2019); head/mid/tail: thirds of the classes ranked by count, never empty where the count groups
# can be (CIFAR-10-LT at imbalance 100 has no class under 20 images)
GROUPS = ("many", "medium", "few", "head", "mid", "tail")


def per_class_accuracy(pred: Any, labels: Any, num_classes: int) -> np.ndarray:
    """(C,) accuracy in percent of each class over its test samples (NaN for a class without test samples)."""
    pred, labels = np.asarray(pred).reshape(-1), np.asarray(labels).reshape(-1)
    correct = np.bincount(labels, weights=(pred == labels).astype(np.float64), minlength=num_classes)
    total = np.bincount(labels, minlength=num_classes)
    # np.where evaluates both branches: dividing by max(total, 1) keeps 0/0 (a RuntimeWarning, an error under
    # pytest's filterwarnings) out of the discarded one
    return np.where(total > 0, 100.0 * correct / np.maximum(total, 1), np.nan)


def group_accuracy(pred: Any, labels: Any, classes: Any) -> float:
    """Accuracy (%) over the test samples whose label is in `classes`; NaN when there are none."""
    pred, labels = np.asarray(pred).reshape(-1), np.asarray(labels).reshape(-1)
    member = np.isin(labels, np.asarray(classes, dtype=np.int64))
    return float(100.0 * np.mean(pred[member] == labels[member])) if member.any() else float("nan")


def group_metrics(pred: Any, labels: Any, class_counts: Any) -> dict[str, float]:
    """{many, medium, few, head, mid, tail} -> accuracy (%) of predictions (Q,) against labels (Q,)."""
    groups = class_groups([int(n) for n in np.asarray(class_counts).reshape(-1)])
    return {name: group_accuracy(pred, labels, groups[name]) for name in GROUPS}
