"""Long-tail profiles, seeded selection, the kept-index hash and the class groups."""

from __future__ import annotations

import numpy as np
import pytest

from tempbench.datasets import class_groups, indices_hash, long_tail_indices, profile_counts

CIFAR10_LT = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def balanced_labels(num_classes: int, per_class: int) -> np.ndarray:
    return np.repeat(np.arange(num_classes), per_class)


def test_cifar10_profile_counts() -> None:
    cut = long_tail_indices(balanced_labels(10, 5000), 0.01)
    assert cut.class_counts == CIFAR10_LT
    assert len(cut.indices) == sum(CIFAR10_LT) == 12406


def test_cifar100_profile_gives_10847() -> None:
    cut = long_tail_indices(balanced_labels(100, 500), 0.01)
    assert len(cut.indices) == 10847
    assert cut.class_counts[0] == 500 and cut.class_counts[-1] == 5
    assert cut.class_counts == sorted(cut.class_counts, reverse=True)


def test_indices_are_sorted_unique_and_of_the_right_class() -> None:
    labels = np.random.default_rng(1).permutation(balanced_labels(5, 40))
    cut = long_tail_indices(labels, 0.1, seed=3)
    assert np.all(np.diff(cut.indices) > 0)
    assert np.bincount(labels[cut.indices], minlength=5).tolist() == cut.class_counts
    assert cut.indices.dtype == np.int64


def test_same_seed_same_indices_other_seed_different() -> None:
    labels = balanced_labels(10, 500)
    a, b, c = (long_tail_indices(labels, 0.01, seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.indices, b.indices) and a.hash == b.hash
    assert not np.array_equal(a.indices, c.indices) and a.hash != c.hash
    assert a.class_counts == c.class_counts


def test_hash_is_short_hex_and_order_free() -> None:
    h = indices_hash([3, 1, 2])
    assert h == indices_hash(np.array([1, 2, 3])) and len(h) == 12
    int(h, 16)
    assert h != indices_hash([1, 2, 4])


def test_step_profile_and_n_max() -> None:
    assert profile_counts(4, 0.1, "step", n_max=100) == [100, 100, 10, 10]
    cut = long_tail_indices(balanced_labels(4, 200), 0.1, profile="step", n_max=100)
    assert cut.class_counts == [100, 100, 10, 10]


def test_classes_short_of_their_target_keep_everything() -> None:
    labels = np.concatenate([np.zeros(50, int), np.ones(80, int)])  # class 0 smaller than n_max = 80
    assert long_tail_indices(labels, 1.0).class_counts == [50, 80]


@pytest.mark.parametrize("r", [0.0, -0.5, 1.5, float("nan")])
def test_imbalance_factor_out_of_range(r: float) -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        long_tail_indices(balanced_labels(3, 10), r)


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match=r"unknown long-tail profile 'linear'.*exp, step"):
        long_tail_indices(balanced_labels(3, 10), 0.5, profile="linear")


def test_empty_class_is_named() -> None:
    with pytest.raises(ValueError, match=r"class 2 \('ship': 10 images, target 0\) empty"):
        long_tail_indices(balanced_labels(3, 10), 0.05, classes=["cat", "dog", "ship"])
    # a class with no images at all
    with pytest.raises(ValueError, match=r"class 1 \('dog': 0 images, target 10\) empty"):
        long_tail_indices(np.zeros(10, int), 1.0, classes=["cat", "dog"])


def test_class_groups() -> None:
    groups = class_groups([500, 150, 100, 60, 20, 19, 5])
    assert groups["many"] == [0, 1] and groups["medium"] == [2, 3, 4] and groups["few"] == [5, 6]
    assert groups["head"] == [0, 1, 2] and groups["mid"] == [3, 4] and groups["tail"] == [5, 6]
    # thirds follow the counts, not the label order
    assert class_groups([1, 50, 200])["head"] == [2] and class_groups([1, 50, 200])["tail"] == [0]
    assert set(class_groups(CIFAR10_LT)) == {"many", "medium", "few", "head", "mid", "tail"}


def test_shot_groups_use_the_100_and_20_boundaries():
    groups = class_groups([500, 101, 100, 20, 19, 3])
    assert groups["many"] == [0, 1]
    assert groups["medium"] == [2, 3]
    assert groups["few"] == [4, 5]


@pytest.mark.parametrize(("counts", "expected"), [
    ([9, 8, 7, 6, 5, 4], ([0, 1], [2, 3], [4, 5])),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], ([6, 7, 8, 9], [3, 4, 5], [0, 1, 2])),  # C=10: the extra class goes to head
    ([5] * 11, ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10])),  # C=11: head, then mid; equal counts by class index
])
def test_third_groups_order_by_count_and_give_extras_to_head_then_mid(counts, expected):
    groups = class_groups(counts)
    assert tuple(groups[g] for g in ("head", "mid", "tail")) == expected
