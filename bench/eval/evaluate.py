"""One run's evaluation: an `Evaluation` holds the features and computes each classifier once, on first use; every
registered metric (tempbench.eval.metrics) reads it.

    ev = Evaluation(bank, bank_labels, queries, query_labels, class_counts, num_classes=10)
    ev.accuracy(ev.knn(200, 0.1))      # weighted kNN top-1 (%)
    metrics = evaluate(ev)             # every registered metric of its split, by name
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tempbench.datasets import class_groups

from .features import as_labels, as_tensor, prepare_features
from .groups import group_accuracy, per_class_accuracy
from .knn import knn_predict, majority_predict
from .linear import ProbeResult, balanced_accuracy, linear_probe
from .metrics import Metric, list_metrics
from .neighbors import Neighbors, search_neighbors
from .retrieval import recall_at_k

# Neighbours searched once per evaluation: the canonical order (`neighbors`) makes the top k of any k ≤ DEFAULT_K the
# first k columns, so knn200, knn20, kNN@1/@10 and recall@1/5/10 all share one search.
DEFAULT_K = 200


@dataclass(frozen=True)
class LabelledFeatures:
    """(N, d) features of un-augmented images and their (N,) labels."""

    features: Any
    labels: Any


class Evaluation:
    """The features one run is evaluated on, and the predictions derived from them (cached).

    bank: the training split (the kNN bank and the probe's training set); queries: the split evaluated (the test
    split, or the slice held out from training for validation); class_counts: training images per class (defines
    the many/medium/few and head/mid/tail groups); balanced_bank: a class-balanced training split for the full-shot
    probe (the base dataset's uncut training split, SDCLR/BCL protocol), None when there is none. seed: the probes'
    validation split and the few-shot subset; backend: the kNN search ("auto", "faiss", "torch").
    """

    def __init__(self, bank: LabelledFeatures, queries: LabelledFeatures, class_counts: Any, *, num_classes: int,
                 balanced_bank: LabelledFeatures | None = None, seed: int = 0, backend: str = "auto",
                 device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else as_tensor(bank.features).device
        self.num_classes, self.seed, self.backend = num_classes, seed, backend
        self.bank, self.bank_labels = self._prepare(bank, "bank")
        self.queries, self.labels = self._prepare(queries, "queries")
        if self.bank.shape[1] != self.queries.shape[1]:
            raise ValueError(f"bank features have d={self.bank.shape[1]} but queries d={self.queries.shape[1]}")
        self.class_counts = _check_counts(class_counts, num_classes)
        self.groups = class_groups(self.class_counts.tolist())
        self.balanced_bank = self._prepare(balanced_bank, "balanced bank") if balanced_bank is not None else None
        self._knn: dict[tuple[int, float | None], Tensor] = {}
        self._probes: dict[str, ProbeResult | None] = {}

    def _prepare(self, part: LabelledFeatures, name: str) -> tuple[Tensor, Tensor]:
        x = prepare_features(part.features, self.device)
        return x, as_labels(part.labels, x.shape[0], self.num_classes, self.device, f"{name} labels")

    # ---- classifiers ------------------------------------------------------------------------------------------
    @cached_property
    def neighbors(self) -> Neighbors:
        """The DEFAULT_K nearest bank rows of every query, canonical order (exact, see `neighbors`)."""
        return search_neighbors(self.bank, self.queries, DEFAULT_K, backend=self.backend)

    def knn(self, k: int, temperature: float | None = None) -> Tensor:
        """(Q,) int64 kNN predictions of the queries from the bank, cached per (k, temperature).

        With a temperature T: weighted kNN, each of the k nearest votes exp(sim / T) for its class (Wu et al. 2018,
        InstDisc; `knn_predict`). Without: one vote per neighbour, ties to the nearest (`majority_predict`).
        """
        key = (k, temperature)
        if key not in self._knn:
            # k beyond the shared search cannot be a prefix of it: search again (rare; no registered metric does)
            nb = self.neighbors if k <= DEFAULT_K else search_neighbors(self.bank, self.queries, k,
                                                                        backend=self.backend)
            self._knn[key] = (knn_predict(nb, self.bank_labels, self.num_classes, k, temperature)
                              if temperature is not None else majority_predict(nb, self.bank_labels,
                                                                               self.num_classes, k))
        return self._knn[key]

    def probe(self, kind: str = "full") -> ProbeResult | None:
        """A linear probe trained on the bank ("full"), on a class-balanced subset of it with the smallest class's
        count per class ("fewshot", Kukleva et al.), or on the balanced bank ("fullshot"; None without one)."""
        if kind not in self._probes:
            train = self._probe_training_set(kind)
            self._probes[kind] = None if train is None else linear_probe(*train, self.queries, self.num_classes,
                                                                         seed=self.seed)
        return self._probes[kind]

    def _probe_training_set(self, kind: str) -> tuple[Tensor, Tensor] | None:
        if kind == "full":
            return self.bank, self.bank_labels
        if kind == "fullshot":
            return self.balanced_bank
        if kind == "fewshot":
            keep = balanced_subset(self.bank_labels, self.num_classes, self.seed)
            return self.bank[keep], self.bank_labels[keep]
        raise ValueError(f"unknown probe kind {kind!r}; valid: full, fewshot, fullshot")

    def probe_predictions(self, kind: str = "full") -> Tensor | None:
        """(Q,) int64 query predictions of the `kind` probe (see `probe`); None when it cannot run (no balanced
        bank for "fullshot")."""
        probe = self.probe(kind)
        return None if probe is None else probe.test_pred

    # ---- scores -----------------------------------------------------------------------------------------------
    def accuracy(self, pred: Tensor | None) -> float:
        """Top-1 accuracy (%) of (Q,) predictions; NaN for a classifier that could not run."""
        return float("nan") if pred is None else 100.0 * (pred == self.labels).double().mean().item()

    def class_average(self, pred: Tensor | None) -> float:
        """Mean over the classes present in the queries of each class's accuracy (%)."""
        return float("nan") if pred is None else balanced_accuracy(pred, self.labels, self.num_classes)

    def group_accuracy(self, pred: Tensor | None, group: str) -> float:
        """Accuracy (%) over the queries of one long-tail group (many, medium, few, head, mid, tail)."""
        if pred is None:
            return float("nan")
        return group_accuracy(pred.cpu().numpy(), self.labels.cpu().numpy(), self.groups[group])

    def per_class(self, pred: Tensor | None) -> list[float]:
        """(C,) accuracy of every class (%), NaN for a class without queries."""
        if pred is None:
            return [float("nan")] * self.num_classes
        return [float(a) for a in per_class_accuracy(pred.cpu().numpy(), self.labels.cpu().numpy(),
                                                     self.num_classes)]

    def recall(self, k: int) -> float:
        """Recall@k (%): a query hits when a same-class bank image is among its k nearest."""
        return recall_at_k(self.neighbors, self.bank_labels, self.labels, ks=(k,))[k]


def balanced_subset(labels: Tensor, num_classes: int, seed: int) -> Tensor:
    """(n · C_present,) int64 sorted positions into `labels` (N,): n = the smallest present class's count, drawn
    uniformly without replacement from every class present, seeded; on `labels`' device.

    The few-shot probe's training set (Kukleva et al., ICLR 2023): balanced, so the probe's own class prior does
    not favour the head classes and the score reflects the features.
    """
    counts = torch.bincount(labels.cpu(), minlength=num_classes)
    n = int(counts[counts > 0].min())
    gen = torch.Generator().manual_seed(seed)  # a CPU generator: the same subset on every device
    picks = [torch.nonzero(labels.cpu() == c).flatten()[torch.randperm(int(counts[c]), generator=gen)[:n]]
             for c in range(num_classes) if counts[c] > 0]
    return torch.sort(torch.cat(picks)).values.to(labels.device)


def evaluate(ev: Evaluation, metrics: list[Metric] | None = None, *, split: str = "test") -> dict[str, float]:
    """{metric name: value} of every registered `views` metric of `split` (or the given ones) on `ev`; val metrics
    are named as registered (`val_...`)."""
    chosen = metrics if metrics is not None else list_metrics(pairing="views", split=split)
    return {m.name: float(m.compute(ev)) for m in chosen if m.compute is not None}


def _check_counts(class_counts: Any, num_classes: int) -> np.ndarray:
    counts = np.asarray(class_counts.cpu() if isinstance(class_counts, Tensor) else class_counts).reshape(-1)
    if counts.size != num_classes or (counts < 0).any():
        raise ValueError(f"class_counts must hold {num_classes} non-negative counts, got {counts.tolist()[:20]}")
    return counts.astype(np.int64)
