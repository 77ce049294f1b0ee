"""Per-class and long-tail group accuracy on hand-made cases (the group rules: tests/datasets/test_long_tail.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tempbench.eval import group_metrics, per_class_accuracy


def test_per_class_accuracy_by_hand():
    labels = np.array([0, 0, 1, 1, 1, 3])
    pred = np.array([0, 1, 1, 1, 0, 3])
    np.testing.assert_allclose(per_class_accuracy(pred, labels, 4), [50.0, 200 / 3, np.nan, 100.0])


def test_group_metrics_average_over_test_samples():
    counts = [300, 150, 50, 30, 10, 5]  # many: 0, 1; medium: 2, 3; few: 4, 5; head 0, 1; mid 2, 3; tail 4, 5
    labels = np.array([0, 0, 0, 1, 2, 3, 3, 4, 5, 5])
    pred = np.array([0, 0, 1, 1, 2, 0, 0, 4, 4, 4])
    m = group_metrics(pred, labels, counts)
    assert m["many"] == pytest.approx(100 * 3 / 4)  # per sample (3 of 4), not per class (mean of 2/3 and 1)
    assert m["medium"] == pytest.approx(100 * 1 / 3)
    assert m["few"] == pytest.approx(100 * 1 / 3)
    assert (m["head"], m["mid"], m["tail"]) == (m["many"], m["medium"], m["few"])


def test_empty_groups_are_nan():
    m = group_metrics(np.array([0, 1]), np.array([0, 1]), [5000, 2000])
    assert m["many"] == 100.0
    assert np.isnan(m["medium"]) and np.isnan(m["few"])
    assert np.isnan(m["tail"])  # C=2: head and mid get one class each, tail none
