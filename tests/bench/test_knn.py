"""Weighted kNN and recall@k against loop references written from the definitions (InstDisc, Wu et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tempbench.eval import evaluate_features, knn_predict, prepare_features, recall_at_k, search_neighbors
from tempbench.eval import neighbors as neighbors_module
from tempbench.eval.knn import PROTOCOLS

BACKENDS = ["faiss", "torch"]


def reference_neighbors(train: torch.Tensor, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and similarities of the k nearest rows: similarity descending, then index ascending."""
    sims = train.double().numpy() @ query
    order = sorted(range(len(sims)), key=lambda j: (-sims[j], j))[:k]
    return np.array(order), sims[order]


def reference_knn(train, train_labels, test, num_classes, k, temperature):
    """Loop version: per query, Σ exp(sim/T) per class over the top k; ties -> lowest class (1e-9 relative)."""
    preds = []
    for query in test.double().numpy():
        idx, sims = reference_neighbors(train, query, k)
        scores = [0.0] * num_classes
        for j, s in zip(idx, sims, strict=True):
            scores[int(train_labels[j])] += float(np.exp(s / temperature))
        best = max(scores)
        preds.append(min(c for c in range(num_classes) if scores[c] >= best * (1 - 1e-9)))
    return np.array(preds)


def reference_recall(train, train_labels, test, test_labels, k):
    hits = [int(test_labels[i]) in {int(train_labels[j]) for j in reference_neighbors(train, q, k)[0]}
            for i, q in enumerate(test.double().numpy())]
    return 100.0 * np.mean(hits)


def random_problem(n_train=300, n_test=60, dim=16, num_classes=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=gen)
    y_train = torch.randint(num_classes, (n_train,), generator=gen)
    y_test = torch.randint(num_classes, (n_test,), generator=gen)
    train = prepare_features(centers[y_train] + 1.5 * torch.randn(n_train, dim, generator=gen))
    test = prepare_features(centers[y_test] + 1.5 * torch.randn(n_test, dim, generator=gen))
    return train, y_train, test, y_test


def duplicated_problem():
    """Training rows are 12 distinct vectors repeated 25 times with mixed labels: neighbours tie in similarity, and
    a query equal to a base vector sees hundreds of exactly tied neighbours at every cut-off."""
    gen = torch.Generator().manual_seed(1)
    base = prepare_features(torch.randn(12, 8, generator=gen))
    train = base.repeat(25, 1)
    y_train = torch.randint(4, (train.shape[0],), generator=gen)
    test = torch.cat([base[:6], prepare_features(base[6:] + 0.05 * torch.randn(6, 8, generator=gen))])
    return train, y_train, test, torch.randint(4, (12,), generator=gen)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("problem", [random_problem, duplicated_problem])
@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_knn_matches_loop_reference(backend, problem, protocol):
    train, y_train, test, _ = problem()
    k, temperature = PROTOCOLS[protocol]
    neighbors = search_neighbors(train, test, k, backend=backend)
    pred = knn_predict(neighbors, y_train, 5, k, temperature)
    np.testing.assert_array_equal(pred.numpy(), reference_knn(train, y_train, test, 5, k, temperature))


@pytest.mark.parametrize("backend", BACKENDS)
def test_neighbours_follow_canonical_order_under_ties(backend):
    train, _, test, _ = duplicated_problem()
    neighbors = search_neighbors(train, test, 40, backend=backend)
    for i, query in enumerate(test.double().numpy()):
        idx, sims = reference_neighbors(train, query, 40)
        np.testing.assert_array_equal(neighbors.indices[i].numpy(), idx)
        np.testing.assert_array_equal(neighbors.sims[i].numpy(), sims)


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_score_tie_goes_to_lowest_class(backend):
    a, b = prepare_features(torch.tensor([[1.0, 0.0], [0.6, 0.8]]))
    # class 2 and class 1 each get one copy of a and of b: equal scores, whatever the order of the neighbours
    train = torch.stack([a, a, b, b])
    labels = torch.tensor([2, 1, 2, 1])
    neighbors = search_neighbors(train, a[None], 4, backend=backend)
    assert knn_predict(neighbors, labels, 3, 4, 0.1).item() == 1


def test_backends_agree_on_larger_random_features():
    train, y_train, test, _ = random_problem(n_train=3000, n_test=400, dim=32, num_classes=10, seed=3)
    results = {b: search_neighbors(train, test, 200, backend=b) for b in BACKENDS}
    assert torch.equal(results["faiss"].indices, results["torch"].indices)
    assert torch.equal(results["faiss"].sims, results["torch"].sims)
    for k, t in PROTOCOLS.values():
        preds = [knn_predict(r, y_train, 10, k, t) for r in results.values()]
        assert torch.equal(*preds)


@pytest.mark.parametrize("backend", BACKENDS)
def test_collapsed_features_fall_back_to_exhaustive_search(backend):
    # every similarity ties (a collapsed encoder): the canonical neighbours are the lowest training indices
    train = prepare_features(torch.ones(100, 4))
    neighbors = search_neighbors(train, train[:3], 20, backend=backend)
    assert torch.equal(neighbors.indices, torch.arange(20).expand(3, -1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_larger_than_training_set_is_clamped(backend):
    train, y_train, test, _ = random_problem(n_train=30, n_test=10)
    neighbors = search_neighbors(train, test, 200, backend=backend)
    assert neighbors.indices.shape == (10, 30)
    pred = knn_predict(neighbors, y_train, 5, 200, 0.1)
    np.testing.assert_array_equal(pred.numpy(), reference_knn(train, y_train, test, 5, 30, 0.1))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("problem", [random_problem, duplicated_problem])
def test_recall_matches_loop_reference(backend, problem):
    train, y_train, test, y_test = problem()
    recall = recall_at_k(search_neighbors(train, test, 10, backend=backend), y_train, y_test)
    for k in (1, 5, 10):
        assert recall[k] == pytest.approx(reference_recall(train, y_train, test, y_test, k))


def test_auto_falls_back_to_torch_without_faiss(monkeypatch):
    assert neighbors_module.resolve_backend("auto", torch.device("cpu")) == "faiss"
    monkeypatch.setattr(neighbors_module, "_import_faiss", lambda: None)
    assert neighbors_module.resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="faiss is not installed"):
        neighbors_module.resolve_backend("faiss", torch.device("cpu"))
    train, _, test, _ = random_problem()
    assert search_neighbors(train, test, 5).indices.shape == (60, 5)


def test_bad_inputs_raise():
    train, _, test, _ = random_problem()
    with pytest.raises(ValueError, match="unknown kNN backend 'annoy'"):
        search_neighbors(train, test, 5, backend="annoy")
    with pytest.raises(ValueError, match="unit L2 norm"):
        search_neighbors(train * 3, test, 5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        search_neighbors(train, test, 0)


def test_evaluate_features_keys_and_consistency():
    train, y_train, test, y_test = random_problem(n_train=400, n_test=100, num_classes=5)
    counts = torch.bincount(y_train, minlength=5)
    metrics, per_class = evaluate_features(3 * train, y_train, test, y_test, counts, num_classes=5)
    groups = [f"{p}_{g}" for p in ("knn200", "linear") for g in ("many", "medium", "few", "head", "mid", "tail")]
    assert set(metrics) == {"knn200_top1", "knn20_top1", "recall_at_1", "recall_at_5", "recall_at_10",
                            "linear_top1", "linear_wd", "linear_val_top1", *groups}
    assert all(isinstance(v, float) for v in metrics.values())
    k, t = PROTOCOLS["knn200"]
    expected = 100 * np.mean(reference_knn(train, y_train, test, 5, k, t) == y_test.numpy())
    assert metrics["knn200_top1"] == pytest.approx(expected)
    assert metrics["recall_at_1"] <= metrics["recall_at_5"] <= metrics["recall_at_10"]
    assert metrics["knn200_medium"] == pytest.approx(metrics["knn200_top1"])  # every class has 20–100 images
    assert np.isnan(metrics["knn200_many"]) and np.isnan(metrics["linear_few"])
    assert set(per_class) == {"per_class_knn200", "per_class_linear"}
    assert len(per_class["per_class_linear"]) == 5
