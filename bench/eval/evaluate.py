"""One entry point for the final evaluation of a run: every protocol on backbone features of un-augmented images."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .features import as_labels, as_tensor, prepare_features
from .groups import group_metrics, per_class_accuracy
from .knn import PROTOCOLS, knn_predict
from .linear import linear_probe
from .neighbors import search_neighbors
from .retrieval import RECALL_KS, recall_at_k

GROUPS = ("many", "medium", "few", "head", "mid", "tail")


def evaluate_features(train_feats: Any, train_labels: Any, test_feats: Any, test_labels: Any, class_counts: Any, *,
                      num_classes: int, device: torch.device | str | None = None, seed: int = 0,
                      backend: str = "auto") -> tuple[dict[str, float], dict[str, list[float]]]:
    """Weighted kNN (k=200/T=0.1, k=20/T=0.07), recall@1/5/10, linear probe and long-tail groups.

    train_feats: (N, d), test_feats: (Q, d) backbone features (normalised here); labels (N,), (Q,) in [0, num_classes);
    class_counts: (num_classes,) training images per class (defines many/medium/few and head/mid/tail).
    device: where to compute (default: where train_feats are); seed: the probe's validation split; backend: kNN search.

    Returns (metrics, per_class): metrics is flat, JSON-serialisable, percent 0–100: knn200_top1, knn20_top1,
    recall_at_{1,5,10}, linear_top1, linear_wd (the chosen λ, not a percentage), linear_val_top1, and
    knn200_/linear_ + many, medium, few, head, mid, tail (NaN for an empty group); per_class holds
    per_class_knn200 and per_class_linear, (num_classes,) lists of accuracy (NaN without test samples).
    """
    device = torch.device(device) if device is not None else as_tensor(train_feats).device
    train, test = prepare_features(train_feats, device), prepare_features(test_feats, device)
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train features have d={train.shape[1]} but test features d={test.shape[1]}")
    y_train = as_labels(train_labels, train.shape[0], num_classes, device, "train_labels")
    y_test = as_labels(test_labels, test.shape[0], num_classes, device, "test_labels")
    counts = _check_counts(class_counts, num_classes)

    # one neighbour search serves both kNN protocols and every recall@k: all are prefixes of the canonical order
    k_max = max(max(k for k, _ in PROTOCOLS.values()), max(RECALL_KS))
    neighbors = search_neighbors(train, test, k_max, backend=backend)
    preds = {name: knn_predict(neighbors, y_train, num_classes, k, t) for name, (k, t) in PROTOCOLS.items()}
    metrics = {f"{name}_top1": _accuracy(pred, y_test) for name, pred in preds.items()}
    metrics |= {f"recall_at_{k}": r for k, r in recall_at_k(neighbors, y_train, y_test).items()}

    probe = linear_probe(train, y_train, test, num_classes, seed=seed)
    preds["linear"] = probe.test_pred
    metrics |= {"linear_top1": _accuracy(probe.test_pred, y_test), "linear_wd": float(probe.wd),
                "linear_val_top1": float(probe.val_top1)}

    labels_np = y_test.cpu().numpy()
    per_class = {}
    for name in ("knn200", "linear"):
        pred_np = preds[name].cpu().numpy()
        metrics |= {f"{name}_{g}": v for g, v in group_metrics(pred_np, labels_np, counts).items()}
        per_class[f"per_class_{name}"] = [float(a) for a in per_class_accuracy(pred_np, labels_np, num_classes)]
    return metrics, per_class


def _accuracy(pred: Tensor, labels: Tensor) -> float:
    return 100.0 * (pred == labels).double().mean().item()


def _check_counts(class_counts: Any, num_classes: int) -> np.ndarray:
    counts = np.asarray(class_counts.cpu() if isinstance(class_counts, Tensor) else class_counts).reshape(-1)
    if counts.size != num_classes or (counts < 0).any():
        raise ValueError(f"class_counts must hold {num_classes} non-negative counts, got {counts.tolist()[:20]}")
    return counts
