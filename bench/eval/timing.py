"""Timings of the evaluation protocols on random features, for `tempbench perf`: the kNN backends side by side with
scikit-learn's brute-force `KNeighborsClassifier` as the yardstick, and the linear probe."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from .features import prepare_features
from .knn import knn_predict
from .linear import linear_probe
from .neighbors import propose_candidates, search_neighbors

KNN_BACKENDS = ("faiss", "torch", "sklearn")  # sklearn: an outside yardstick, not a backend `search_neighbors` has


def random_features(n_train: int, n_test: int, dim: int, num_classes: int, seed: int = 0,
                    device: str = "cpu") -> dict[str, torch.Tensor]:
    """{"train_x" (n_train, dim), "train_y" (n_train,), "test_x" (n_test, dim), "test_y" (n_test,)} on `device`:
    Gaussian features with a class-dependent mean (so the probe has something to learn), prepared as real features
    are (float32, L2-normalised, snapped), and int64 labels drawn uniformly; seeded, identical on every device."""
    gen = torch.Generator().manual_seed(seed)
    # noise of norm ≈ 1 around class centres of norm ≈ 0.1: overlapping classes, so neither the probe nor the kNN is
    # trivially perfect
    centers = 0.1 * torch.randn(num_classes, dim, generator=gen) / dim**0.5
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = torch.randint(num_classes, (n,), generator=gen)
        x = torch.randn(n, dim, generator=gen) / dim**0.5 + centers[y]
        out[f"{split}_x"], out[f"{split}_y"] = prepare_features(x).to(device), y.to(device)
    return out


def time_knn_backends(n_train: int = 50_000, n_test: int = 10_000, dim: int = 512, k: int = 200,
                      num_classes: int = 10, backends: Sequence[str] = KNN_BACKENDS, device: str = "cpu",
                      seed: int = 0) -> list[dict[str, Any]]:
    """Seconds for kNN (k, T=0.1) predictions of n_test queries against n_train features, one row per backend.

    Rows: backend, search_s (the backend's own float32 top-(k+margin) search; for sklearn fit + predict),
    total_s (search + exact re-rank + votes, what `Evaluation.knn` pays), agree (predictions equal to the
    first tempbench backend's, None for sklearn whose distance ties and votes differ).
    """
    data = random_features(n_train, n_test, dim, num_classes, seed, device)
    rows, reference = [], None
    for backend in backends:
        if backend == "sklearn":
            rows.append({"backend": backend, "search_s": _time_sklearn(data, k), "total_s": None, "agree": None})
            continue
        start = time.perf_counter()
        propose_candidates(data["train_x"], data["test_x"], k, backend)
        search_s = _elapsed(start, device)
        start = time.perf_counter()
        neighbors = search_neighbors(data["train_x"], data["test_x"], k, backend=backend)
        pred = knn_predict(neighbors, data["train_y"], num_classes, k, 0.1)
        total_s = _elapsed(start, device)
        reference = pred if reference is None else reference
        rows.append({"backend": backend, "search_s": search_s, "total_s": total_s,
                     "agree": bool(torch.equal(pred, reference))})
    return rows


def time_linear_probe(n_train: int = 50_000, n_test: int = 10_000, dim: int = 512, num_classes: int = 10,
                      device: str = "cpu", seed: int = 0) -> dict[str, Any]:
    """Seconds for `linear_probe` (λ grid on a validation split, refit, test predictions) on random features.

    Returns {"seconds", "wd" (the chosen λ), "val_top1" (class-balanced validation accuracy, %), "test_top1" (%)}:
    the accuracies show the timed probe actually learned something.
    """
    data = random_features(n_train, n_test, dim, num_classes, seed, device)
    start = time.perf_counter()
    probe = linear_probe(data["train_x"], data["train_y"], data["test_x"], num_classes, seed=seed)
    seconds = _elapsed(start, device)
    top1 = 100.0 * (probe.test_pred == data["test_y"]).double().mean().item()
    return {"seconds": seconds, "wd": probe.wd, "val_top1": probe.val_top1, "test_top1": top1}


def _time_sklearn(data: dict[str, torch.Tensor], k: int) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    x_train, y_train = data["train_x"].cpu().numpy(), data["train_y"].cpu().numpy()
    start = time.perf_counter()
    clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute", weights="distance").fit(x_train, y_train)
    clf.predict(data["test_x"].cpu().numpy())
    return time.perf_counter() - start


def _elapsed(start: float, device: str) -> float:
    if str(device).startswith("cuda"):  # CUDA kernels run asynchronously: wait for them before reading the clock
        torch.cuda.synchronize()
    return time.perf_counter() - start
