"""Long-tailed training subsets and the class groups long-tail metrics report on.

The exponential profile is the one of Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin
Loss" (NeurIPS 2019): class c (in label order) keeps n_c = int(n_max · r^(c/(C−1))) images, which gives CIFAR-10-LT
12,406 and CIFAR-100-LT 10,847 images at r = 0.01. The step profile keeps n_max images in the first half of the
classes and int(n_max · r) in the rest. Only the training split is ever cut.

The flat profile is the matched-size control (so "the gain is larger on the long tail" compares equal data and
steps): a balanced cut of exactly `n_total` training images, floor(n_total / C) per class and one more for the first
n_total mod C classes of the order. It takes `n_total`, not n_max: the long-tailed cut it is matched to is known by
its total (digits-lt keeps 588 images, 58.8 a class), which no per-class n_max can give exactly.

The class order says which class gets which count: the profile gives counts by rank (rank 0 the largest), and the
order lists the class of each rank. "label" (class c has rank c, the convention above), "reversed" (class C−1 is the
head), "permutation:SEED" (numpy default_rng(SEED).permutation(C)) or an explicit list of class ids, a permutation of
range(C). Reordering separates "τ rises with class frequency" from "τ differs between these particular classes".
n_max stays the largest class's count and a class short of its target keeps all it has, so another order can keep
a few images more or less than "label" does.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PROFILES = ("exp", "step", "flat")
NAMED_ORDERS = ("label", "reversed")  # and "permutation:SEED", or a list of class ids

# The usual long-tail convention (Liu et al., OLTR, CVPR 2019): training images per class.
MANY_ABOVE = 100
FEW_BELOW = 20


@dataclass(frozen=True)
class LongTailCut:
    """The kept training indices (sorted, int64), images per class after the cut, and their short hash."""

    indices: np.ndarray
    class_counts: list[int]
    hash: str


def check_long_tail(imbalance_factor: float, profile: str = "exp", n_max: int | None = None,
                    n_total: int | None = None) -> None:
    """Raise ValueError if the imbalance factor lies outside (0, 1], the profile is unknown, n_max < 1, or n_total
    is given to another profile than "flat" (which needs it, with imbalance factor 1 and no n_max)."""
    if not isinstance(imbalance_factor, (int, float)) or not 0.0 < float(imbalance_factor) <= 1.0:
        raise ValueError(f"imbalance factor (long_tail) must be in (0, 1], got {imbalance_factor!r}")
    if profile not in PROFILES:
        raise ValueError(f"unknown long-tail profile {profile!r}; valid: {', '.join(PROFILES)}")
    if n_max is not None and (not isinstance(n_max, int) or n_max < 1):
        raise ValueError(f"n_max must be a positive int (images in the largest class), got {n_max!r}")
    if profile != "flat":
        if n_total is not None:
            raise ValueError(f"n_total (images of a balanced cut) belongs to the flat profile, not to {profile!r}")
        return
    if isinstance(n_total, bool) or not isinstance(n_total, int) or n_total < 1:
        raise ValueError(f"the flat profile needs n_total, a positive int (training images in all), got {n_total!r}")
    if float(imbalance_factor) != 1.0 or n_max is not None:
        raise ValueError("the flat profile is balanced: it takes n_total, no imbalance factor below 1 and no n_max")


def profile_counts(num_classes: int, imbalance_factor: float, profile: str = "exp", n_max: int = 5000,
                   n_total: int | None = None) -> list[int]:
    """Target images per rank (rank 0 the largest; in label order under the "label" class order), before clipping
    to what each class has. The flat profile reads n_total only (n_max is the exp and step profiles' scale)."""
    if profile == "flat":
        check_long_tail(imbalance_factor, profile, None, n_total)  # n_total is a positive int from here on
        return [n_total // num_classes + (1 if c < n_total % num_classes else 0) for c in range(num_classes)]
    check_long_tail(imbalance_factor, profile, n_max, n_total)
    r, big_c = float(imbalance_factor), num_classes
    if profile == "exp":
        return [int(n_max * r ** (c / (big_c - 1))) if big_c > 1 else n_max for c in range(big_c)]
    head = big_c // 2
    return [n_max if c < head else int(n_max * r) for c in range(big_c)]


def check_class_order(order: str | Sequence[int]) -> None:
    """Raise ValueError unless `order` is "label", "reversed", "permutation:SEED" (SEED an int >= 0) or a list of
    class ids that is a permutation of range(len(order)) (the class count is checked by `class_ranking`)."""
    if isinstance(order, str):
        seed = order.removeprefix("permutation:")
        if order in NAMED_ORDERS or (seed != order and seed.isdigit()):
            return
        raise ValueError(f"class_order must be 'label', 'reversed', 'permutation:SEED' (SEED an int >= 0) or a list "
                         f"of class ids, got {order!r}")
    if not isinstance(order, Sequence) or any(isinstance(c, bool) or not isinstance(c, int) for c in order):
        raise ValueError(f"class_order as a list must hold class ids (ints), got {order!r}")
    times = Counter(order)
    problems = {"repeats": sorted(c for c, k in times.items() if k > 1),
                "names ids outside it": sorted(c for c in times if not 0 <= c < len(order)),
                "misses": sorted(set(range(len(order))) - set(times))}
    if any(problems.values()):
        said = "; ".join(f"{what} {ids}" for what, ids in problems.items() if ids)
        raise ValueError(f"class_order {list(order)} is not a permutation of range({len(order)}): it {said}")


def class_ranking(order: str | Sequence[int], num_classes: int) -> list[int]:
    """The class id at each rank of the profile (rank 0 gets the largest count) under `order` (see the module
    docstring); a list of another length than `num_classes` is a ValueError."""
    check_class_order(order)
    if order == "label":
        return list(range(num_classes))
    if order == "reversed":
        return list(range(num_classes - 1, -1, -1))
    if isinstance(order, str):  # permutation:SEED
        return [int(c) for c in np.random.default_rng(int(order.split(":")[1])).permutation(num_classes)]
    if len(order) != num_classes:
        raise ValueError(f"class_order lists {len(order)} classes but the dataset has {num_classes}: it must be a "
                         f"permutation of range({num_classes})")
    return [int(c) for c in order]


def indices_hash(indices: np.ndarray | Sequence[int]) -> str:
    """First 12 hex digits of sha256 over the sorted indices as little-endian int64: stable across platforms."""
    arr = np.sort(np.asarray(indices, dtype="<i8"))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:12]


def long_tail_indices(labels: np.ndarray | Sequence[int], imbalance_factor: float, profile: str = "exp",
                      n_max: int | None = None, seed: int = 0, classes: Sequence[str] | None = None, *,
                      n_total: int | None = None, class_order: str | Sequence[int] = "label") -> LongTailCut:
    """Cut a long-tailed (or, with the flat profile, a smaller balanced) subset out of a training split.

    labels: (N,) integer class labels in [0, C). C is len(classes) when given (so a class with no images at all is
    caught), else max(label) + 1. n_max defaults to the largest class count. The profile's count of rank i goes to
    class class_ranking(class_order, C)[i]. A class with fewer images than its target keeps all of them, except
    under the flat profile, whose total is the point: there a short class is a ValueError. Each class's images are
    chosen by one numpy Generator seeded with `seed`, walking the classes in label order: the same seed gives the
    same indices. A class left empty is a ValueError naming it. class_counts are in label order.
    """
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(classes) if classes is not None else int(labels.max()) + 1
    available = np.bincount(labels, minlength=num_classes)
    if profile == "flat":
        by_rank = profile_counts(num_classes, imbalance_factor, profile, n_total=n_total)
    else:
        n_max = int(available.max()) if n_max is None else n_max
        by_rank = profile_counts(num_classes, imbalance_factor, profile, n_max, n_total)
    targets = [0] * num_classes
    for rank, c in enumerate(class_ranking(class_order, num_classes)):
        targets[c] = by_rank[rank]
    short = [c for c in range(num_classes) if available[c] < targets[c]]
    if profile == "flat" and short:
        raise ValueError(f"the flat cut of {n_total} images wants {targets[short[0]]} of class {short[0]}, which has "
                         f"{available[short[0]]}: lower n_total")
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
