"""Weighted kNN and recall@k against loop references written from the definitions (InstDisc, Wu et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tempbench.eval import (
    Evaluation,
    LabelledFeatures,
    evaluate,
    knn_predict,
    prepare_features,
    recall_at_k,
    search_neighbors,
)
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


def test_the_evaluation_agrees_with_the_references():
    train, y_train, test, y_test = random_problem(n_train=400, n_test=100, num_classes=5)
    counts = torch.bincount(y_train, minlength=5)
    ev = Evaluation(LabelledFeatures(3 * train, y_train), LabelledFeatures(test, y_test), counts, num_classes=5)
    metrics = evaluate(ev)
    groups = [f"{p}_{g}" for p in ("knn200", "linear") for g in ("many", "medium", "few", "head", "mid", "tail")]
    assert {"knn200_top1", "knn20_top1", "knn1_top1", "knn10_top1", "recall_at_1", "recall_at_5", "recall_at_10",
            "linear_top1", *groups} <= set(metrics)
    assert all(isinstance(v, float) for v in metrics.values())
    k, t = PROTOCOLS["knn200"]
    expected = 100 * np.mean(reference_knn(train, y_train, test, 5, k, t) == y_test.numpy())
    assert metrics["knn200_top1"] == pytest.approx(expected)
    assert metrics["recall_at_1"] <= metrics["recall_at_5"] <= metrics["recall_at_10"]
    assert metrics["knn200_medium"] == pytest.approx(metrics["knn200_top1"])  # every class has 20–100 images
    assert np.isnan(metrics["knn200_many"]) and np.isnan(metrics["linear_few"])
    per_class = ev.per_class(ev.knn(200, 0.1))
    assert len(per_class) == 5 and np.mean(per_class) == pytest.approx(metrics["knn200_class_avg"])


# --- the float32-decides / float64-where-needed search against an exhaustive float64 reference --------------------

def exact_reference(train: torch.Tensor, test: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) canonical indices and sims from the full float64 similarity matrix (exact on snapped features)."""
    sims = test.double().numpy() @ train.double().numpy().T
    order = np.stack([np.lexsort((np.arange(len(row)), -row))[:k] for row in sims])
    return order, np.take_along_axis(sims, order, axis=1)


def near_tie_problem(seed):
    """Clusters of rows a few float32 ulps apart (differences far below the float32 error bound), plus exact
    duplicates: float32 cannot order them, so the exact float64 path must."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(6, 64, generator=gen)
    rows = centres.repeat_interleave(60, 0)
    jittered = torch.rand(360, 1, generator=gen) > 0.3  # the other rows stay exact duplicates of their centre
    train = prepare_features(rows + 2e-6 * torch.randn(rows.shape, generator=gen) * jittered)
    test = prepare_features(centres[torch.randint(6, (40,), generator=gen)] + 1e-6 * torch.randn(40, 64, generator=gen))
    return train, torch.randint(5, (360,), generator=gen), test


def many_ties_problem(seed):
    """Distinct ternary rows with four ±1 entries: similarities take few values, so huge groups of distinct training
    rows tie exactly, at the k-th neighbour and at the candidate boundary."""
    gen = torch.Generator().manual_seed(seed)
    def ternary(n):
        x = torch.zeros(n, 12)
        cols = torch.rand(n, 12, generator=gen).argsort(dim=1)[:, :4]
        signs = torch.randint(2, (n, 4), generator=gen).float() * 2 - 1
        return prepare_features(x.scatter_(1, cols, signs))
    return ternary(500), torch.randint(5, (500,), generator=gen), ternary(50)


def clustered_problem(seed):
    """A few dozen tight clusters with noise: neighbour similarities crowd within the float32 error bound."""
    gen = torch.Generator().manual_seed(seed)
    centres = prepare_features(torch.randn(30, 128, generator=gen))
    labels = torch.randint(5, (30,), generator=gen)
    pick_train, pick_test = torch.randint(30, (1500,), generator=gen), torch.randint(30, (80,), generator=gen)
    train = prepare_features(centres[pick_train] + 0.003 * torch.randn(1500, 128, generator=gen))
    test = prepare_features(centres[pick_test] + 0.003 * torch.randn(80, 128, generator=gen))
    return train, labels[pick_train], test


def graded_clusters_problem(seed):
    """Groups of 10 rows a few ulps apart (or exactly equal) at clearly different similarities to the queries: float32
    cannot order the rows inside a group, but k = 10, 20, ... falls in a clear gap, so no query needs re-searching."""
    gen = torch.Generator().manual_seed(seed)
    anchor = prepare_features(torch.randn(1, 64, generator=gen))
    centres = anchor + torch.arange(1, 9)[:, None] * 0.15 * prepare_features(torch.randn(8, 64, generator=gen))
    rows = centres.repeat_interleave(10, 0)
    rows = rows + 3e-6 * torch.randn(rows.shape, generator=gen) * (torch.rand(80, 1, generator=gen) > 0.4)
    train = torch.cat([prepare_features(rows), prepare_features(torch.randn(300, 64, generator=gen))])
    perm = torch.randperm(380, generator=gen)  # spread each group over the index range
    test = prepare_features(anchor + 1e-6 * torch.randn(30, 64, generator=gen))
    return train[perm], torch.randint(5, (380,), generator=gen), test


HARD_PROBLEMS = [near_tie_problem, many_ties_problem, clustered_problem, graded_clusters_problem]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("problem", HARD_PROBLEMS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_neighbours_match_exact_reference_on_hard_features(backend, problem, seed):
    train, _, test = problem(seed)
    for k in (1, 10, 20, 200):
        neighbors = search_neighbors(train, test, k, backend=backend)
        idx, sims = exact_reference(train, test, min(k, train.shape[0]))
        np.testing.assert_array_equal(neighbors.indices.numpy(), idx)
        np.testing.assert_array_equal(neighbors.sims.numpy(), sims)  # exact float64 cosines, bit for bit
        assert neighbors.sims.dtype == torch.float64


@pytest.mark.parametrize("problem", HARD_PROBLEMS)
@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_knn_matches_loop_reference_on_hard_features(problem, protocol):
    train, y_train, test = problem(5)
    k, temperature = PROTOCOLS[protocol]
    for backend in BACKENDS:
        pred = knn_predict(search_neighbors(train, test, k, backend=backend), y_train, 5, k, temperature)
        np.testing.assert_array_equal(pred.numpy(), reference_knn(train, y_train, test, 5, k, temperature))


@pytest.mark.parametrize("k", [5, 291, 300])
def test_candidates_covering_the_training_set(k):
    # k + MARGIN >= N: the candidates are the whole set (no re-search), with exact duplicates among them
    train, _, test, _ = duplicated_problem()
    neighbors = search_neighbors(train, test, k)
    idx, sims = exact_reference(train, test, min(k, train.shape[0]))
    np.testing.assert_array_equal(neighbors.indices.numpy(), idx)
    np.testing.assert_array_equal(neighbors.sims.numpy(), sims)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("problem", [*HARD_PROBLEMS, lambda seed: random_problem(seed=seed)[:3]])
def test_float32_scores_lie_within_the_error_bound(backend, problem):
    train, _, test = problem(0)
    scores, cand = neighbors_module.scored_candidates(train, test, 50, backend)
    exact = (test.double()[:, None, :] * train.double()[cand]).sum(-1)
    bound = neighbors_module.float32_error_bound(train.shape[1])
    assert (scores.double() - exact).abs().max() <= bound / 2  # the true bound; E keeps a factor 2 of slack
    assert torch.all(scores[:, 1:] <= scores[:, :-1])  # highest first: the search relies on it


def test_gathered_and_sampled_similarities_agree():
    # the gather + bmm path (CUDA and other devices) must give the same exact values as the CPU sampled matmul
    train, _, test = clustered_problem(0)
    scores, cand = neighbors_module.scored_candidates(train, test, 60, "torch")
    mask = scores >= scores[:, 40:41]
    sampled = neighbors_module.exact_similarities(train, test, cand, mask)
    gathered = neighbors_module._gathered_dots(train, test, cand).masked_fill(~mask, -np.inf)
    assert torch.equal(sampled, gathered)
    assert torch.equal(sampled[mask], (test.double()[:, None, :] * train.double()[cand]).sum(-1)[mask])


def test_fallback_only_where_the_candidate_boundary_is_unsure(monkeypatch):
    calls = []
    real = neighbors_module.exhaustive_neighbors
    monkeypatch.setattr(neighbors_module, "exhaustive_neighbors", lambda t, q, k: calls.append(len(q)) or real(t, q, k))
    train, _, test, _ = random_problem(n_train=3000, n_test=200, dim=32, seed=4)
    search_neighbors(train, test, 50)
    assert sum(calls) <= 2  # well-spread features: the float32 gap at the boundary decides nearly every query
    calls.clear()
    train = prepare_features(torch.ones(100, 4))
    search_neighbors(train, train[:3], 20)  # every similarity ties: every query must be searched exhaustively
    assert calls == [3]


@pytest.mark.parametrize("dim", [1, 2, 3, 7, 64, 512, 513, 2048])
def test_in_place_snapping_matches_snap_features(dim):
    from tempbench.eval import snap_features

    gen = torch.Generator().manual_seed(dim)
    raw = torch.nn.functional.normalize(torch.randn(300, dim, generator=gen), dim=1)
    for x in (raw, prepare_features(raw), torch.zeros(2, dim)):
        assert torch.equal(neighbors_module._snapped(x), snap_features(x))
