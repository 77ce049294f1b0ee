"""Long-tailed training subsets and the class groups long-tail metrics report on.

The exponential profile is the one of Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin
Loss" (NeurIPS 2019): class c (in label order) keeps n_c = int(n_max · r^(c/(C−1))) images, which gives CIFAR-10-LT
12,406 and CIFAR-100-LT 10,847 images at r = 0.01. The step profile keeps n_max images in the first half of the
classes and int(n_max · r) in the rest. Only the training split is ever cut.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PROFILES = ("exp", "step")

# The usual long-tail convention (Liu et al., OLTR, CVPR 2019): training images per class.
MANY_ABOVE = 100
FEW_BELOW = 20


@dataclass(frozen=True)
class LongTailCut:
    """The kept training indices (sorted, int64), images per class after the cut, and their short hash."""

    indices: np.ndarray
    class_counts: list[int]
    hash: str


def check_long_tail(imbalance_factor: float, profile: str = "exp", n_max: int | None = None) -> None:
    """Raise ValueError if the imbalance factor lies outside (0, 1], the profile is unknown or n_max < 1."""
    if not isinstance(imbalance_factor, (int, float)) or not 0.0 < float(imbalance_factor) <= 1.0:
        raise ValueError(f"imbalance factor (long_tail) must be in (0, 1], got {imbalance_factor!r}")
    if profile not in PROFILES:
        raise ValueError(f"unknown long-tail profile {profile!r}; valid: {', '.join(PROFILES)}")
    if n_max is not None and (not isinstance(n_max, int) or n_max < 1):
        raise ValueError(f"n_max must be a positive int (images in the largest class), got {n_max!r}")


def profile_counts(num_classes: int, imbalance_factor: float, profile: str = "exp", n_max: int = 5000) -> list[int]:
    """Target images per class, in label order, before clipping to what each class has."""
    check_long_tail(imbalance_factor, profile, n_max)
    r, big_c = float(imbalance_factor), num_classes
    if profile == "exp":
        return [int(n_max * r ** (c / (big_c - 1))) if big_c > 1 else n_max for c in range(big_c)]
    head = big_c // 2
    return [n_max if c < head else int(n_max * r) for c in range(big_c)]


def indices_hash(indices: np.ndarray | Sequence[int]) -> str:
    """First 12 hex digits of sha256 over the sorted indices as little-endian int64: stable across platforms."""
    arr = np.sort(np.asarray(indices, dtype="<i8"))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:12]


def long_tail_indices(labels: np.ndarray | Sequence[int], imbalance_factor: float, profile: str = "exp",
                      n_max: int | None = None, seed: int = 0, classes: Sequence[str] | None = None) -> LongTailCut:
    """Cut a long-tailed subset out of a training split.

    labels: (N,) integer class labels in [0, C). C is len(classes) when given (so a class with no images at all is
    caught), else max(label) + 1. n_max defaults to the largest class count. A class with fewer images than its
    target keeps all of them. Each class's images are chosen by one numpy Generator seeded with `seed`, walking the
    classes in label order: the same seed gives the same indices. A class left empty is a ValueError naming it.
    """
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(classes) if classes is not None else int(labels.max()) + 1
    available = np.bincount(labels, minlength=num_classes)
    n_max = int(available.max()) if n_max is None else n_max
    targets = profile_counts(num_classes, imbalance_factor, profile, n_max)
    members = [np.flatnonzero(labels == c) for c in range(num_classes)]
    takes = [min(target, len(m)) for target, m in zip(targets, members)]
    empty = [c for c, take in enumerate(takes) if take == 0]
    if empty:
        names = ", ".join(f"{c} ({classes[c] if classes is not None else str(c)!r}: {len(members[c])} images, "
                          f"target {targets[c]})" for c in empty)
        raise ValueError(f"the long-tail cut (profile {profile}, imbalance factor {imbalance_factor}, n_max {n_max}) "
                         f"leaves class {names} empty")
    rng = np.random.default_rng(seed)
    kept = [np.sort(rng.permutation(m)[:take]) for m, take in zip(members, takes)]
    indices = np.sort(np.concatenate(kept))
    return LongTailCut(indices=indices, class_counts=[int(t) for t in takes], hash=indices_hash(indices))


def class_groups(class_counts: Sequence[int]) -> dict[str, list[int]]:
    """Class ids per long-tail group, each list sorted ascending.

    many/medium/few: > 100, 20–100, < 20 training images. head/mid/tail: thirds of the class list ranked by count
    (descending, ties in label order); with C % 3 != 0 the head, then the mid third, take the extra class.
    """
    counts = [int(n) for n in class_counts]
    groups: dict[str, list[int]] = {
        "many": [c for c, n in enumerate(counts) if n > MANY_ABOVE],
        "medium": [c for c, n in enumerate(counts) if FEW_BELOW <= n <= MANY_ABOVE],
        "few": [c for c, n in enumerate(counts) if n < FEW_BELOW],
    }
    ranked = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    sizes = [len(counts) // 3 + (1 if i < len(counts) % 3 else 0) for i in range(3)]
    start = 0
    for name, size in zip(("head", "mid", "tail"), sizes):
        groups[name] = sorted(ranked[start:start + size])
        start += size
    return groups
