"""Retrieval of the training set by test queries: recall@k, the fraction of queries with at least one same-class
training image among their k nearest neighbours (the "R@k" of deep metric learning, e.g. Song et al., CVPR 2016)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .neighbors import Neighbors

RECALL_KS = (1, 5, 10)


def recall_at_k(neighbors: Neighbors, train_labels: Tensor, test_labels: Tensor,
                ks: Sequence[int] = RECALL_KS) -> dict[int, float]:
    """{k: recall@k in percent} from canonical neighbours (Q, K) with K ≥ max(ks) (or the whole training set).

    train_labels: (N,) int64, test_labels: (Q,) int64, on the neighbours' device.
    """
    hits = train_labels[neighbors.indices] == test_labels[:, None]  # (Q, K)
    first_hit = hits.cumsum(dim=1) > 0  # (Q, K): a hit within the first j + 1 neighbours
    out = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"recall@k needs k >= 1, got {k}")
        col = min(k, hits.shape[1]) - 1
        out[k] = 100.0 * first_hit[:, col].double().mean().item()
    return out
