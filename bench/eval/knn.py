"""kNN classification on canonical neighbours.

Weighted (Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018, the
InstDisc evaluation): each of the k nearest training neighbours votes for its class with weight exp(sim / T); the
prediction is the class with the largest total vote. Unweighted (the kNN@1 / kNN@10 of the long-tail literature,
e.g. Kukleva et al., ICLR 2023): one vote per neighbour; a tie goes to the tied class with the nearest neighbour, not
to the lowest label, which on a label-ordered long tail would favour head classes."""

from __future__ import annotations

import torch
from torch import Tensor

from .neighbors import Neighbors

# name -> (k, T), the two settings every row reports: k=200, T=0.1 as in the kNN monitor of MoCo's CIFAR-10 demo;
# k=20, T=0.07 as in DINO's eval_knn (Caron et al. 2021). T is in cosine units (sims lie in [-1, 1]).
PROTOCOLS = {"knn200": (200, 0.1), "knn20": (20, 0.07)}
_TIE_RTOL = 1e-9  # class scores this close (relative) count as tied: their float64 sums may differ in the last bits
_BLOCK_ELEMENTS = 1 << 24  # queries per block × max(C, k): caps the float64 score/weight blocks at 128 MiB each


def knn_predict(neighbors: Neighbors, train_labels: Tensor, num_classes: int, k: int, temperature: float) -> Tensor:
    """(Q,) int64 predicted classes from canonical neighbours (`search_neighbors`, at least k of them or all).

    neighbors: (Q, K) indices and float64 similarities, nearest first; train_labels: (N,) int64 on the same device.
    Score of class c = Σ_{j ∈ top-k, y_j = c} exp(s_j / T). Ties (within 1e-9 relative) go to the lowest class index.
    """
    if temperature <= 0:
        raise ValueError(f"kNN temperature must be > 0, got {temperature}")
    k = min(k, neighbors.indices.shape[1])
    chunk = max(1, _BLOCK_ELEMENTS // max(num_classes, k))
    preds = []
    for start in range(0, neighbors.indices.shape[0], chunk):
        idx = neighbors.indices[start:start + chunk, :k]
        # no max-subtraction needed: sims ≤ 1, so exp(sim / T) ≤ e^(1/T), and k of them sum within float64's range
        # for any T ≳ 0.0015
        weights = torch.exp(neighbors.sims[start:start + chunk, :k] / temperature)
        scores = weights.new_zeros((idx.shape[0], num_classes)).scatter_add_(1, train_labels[idx], weights)
        preds.append(argmax_lowest(scores))
    return torch.cat(preds)


def majority_predict(neighbors: Neighbors, train_labels: Tensor, num_classes: int, k: int) -> Tensor:
    """(Q,) int64 majority vote of the k nearest neighbours; ties go to the tied class seen first (nearest).

    Score of class c = votes_c · (k + 1) + (k − rank of c's nearest neighbour): integers, so a difference of one
    vote always outweighs the rank term and ties are exact.
    """
    k = min(k, neighbors.indices.shape[1])
    labels = train_labels[neighbors.indices[:, :k]]  # (Q, k)
    votes = torch.zeros((labels.shape[0], num_classes), dtype=torch.int64, device=labels.device)
    votes.scatter_add_(1, labels, torch.ones_like(labels))
    ranks = torch.arange(k, device=labels.device).expand_as(labels)
    first = torch.full_like(votes, k).scatter_reduce_(1, labels, ranks, reduce="amin")
    return (votes * (k + 1) + (k - first)).argmax(dim=1)


def argmax_lowest(scores: Tensor) -> Tensor:
    """(Q, C) non-negative scores -> (Q,) int64 index of the best class, the lowest index among (near-)ties.

    Plain `argmax` picks among exact ties in a device- and version-dependent way; this rule gives the same class
    on every backend, and the relative tolerance absorbs the last-bit differences of float64 sums taken in another
    order.
    """
    best = scores.max(dim=1, keepdim=True).values
    is_top = scores >= best * (1.0 - _TIE_RTOL)
    classes = torch.arange(scores.shape[1], device=scores.device)
    return torch.where(is_top, classes, scores.shape[1]).amin(dim=1)
