"""Linear probe: agreement with scikit-learn's L-BFGS logistic regression, and a validation split that never sees
the test set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from tempbench.eval import evaluate_features, linear_probe, prepare_features, stratified_split
from tempbench.eval.linear import fit_logistic, predict_logistic


def blobs(n=600, dim=20, num_classes=4, seed=0):
    """Overlapping Gaussian classes: separable-ish, so accuracy is below 100 % and the penalty matters."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=gen)
    y = torch.randint(num_classes, (n,), generator=gen)
    return prepare_features(centers[y] + 1.2 * torch.randn(n, dim, generator=gen)), y


def digits():
    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    return prepare_features(torch.tensor(x[perm], dtype=torch.float32)), torch.tensor(y[perm])


def sklearn_accuracy(x_train, y_train, x_test, y_test, wd):
    clf = LogisticRegression(C=1.0 / (wd * len(y_train)), max_iter=10_000, tol=1e-8)
    clf.fit(x_train.numpy(), y_train.numpy())
    return 100.0 * clf.score(x_test.numpy(), y_test.numpy())


@pytest.mark.parametrize("data", [blobs, digits])
@pytest.mark.parametrize("wd", [1e-4, 1e-3, 1e-2])
def test_fit_matches_sklearn_at_the_same_strength(data, wd):
    x, y = data()
    cut = int(0.7 * len(y))
    params = fit_logistic(x[:cut], y[:cut], int(y.max()) + 1, wd)
    ours = 100.0 * (predict_logistic(params, x[cut:]) == y[cut:]).double().mean().item()
    assert abs(ours - sklearn_accuracy(x[:cut], y[:cut], x[cut:], y[cut:], wd)) <= 1.0


@pytest.mark.parametrize("data", [blobs, digits])
def test_probe_matches_sklearn_at_the_chosen_strength(data):
    x, y = data()
    cut = int(0.7 * len(y))
    probe = linear_probe(x[:cut], y[:cut], x[cut:], int(y.max()) + 1, seed=0)
    ours = 100.0 * (probe.test_pred == y[cut:]).double().mean().item()
    assert abs(ours - sklearn_accuracy(x[:cut], y[:cut], x[cut:], y[cut:], probe.wd)) <= 1.0
    assert probe.val_top1 == max(probe.val_by_wd.values())


def test_probe_is_deterministic_given_the_seed():
    x, y = blobs()
    a, b = (linear_probe(x[:400], y[:400], x[400:], 4, seed=3) for _ in range(2))
    assert torch.equal(a.test_pred, b.test_pred) and a.wd == b.wd and a.val_by_wd == b.val_by_wd


def test_strength_selection_never_sees_the_test_set():
    x, y = blobs(n=500)
    counts = torch.bincount(y[:400], minlength=4)
    base, _ = evaluate_features(x[:400], y[:400], x[400:], y[400:], counts, num_classes=4)
    shuffled_labels = y[400:].roll(7)
    other_features = prepare_features(torch.randn(100, 20, generator=torch.Generator().manual_seed(9)))
    for test_x, test_y in ((x[400:], shuffled_labels), (other_features, y[400:])):
        metrics, _ = evaluate_features(x[:400], y[:400], test_x, test_y, counts, num_classes=4)
        assert metrics["linear_wd"] == base["linear_wd"]
        assert metrics["linear_val_top1"] == base["linear_val_top1"]


def test_stratified_split_is_seeded_disjoint_and_keeps_every_class():
    # a long-tailed label vector: 200, 50, 9, 2 and 1 images
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([200, 50, 9, 2, 1])])[torch.randperm(262)]
    fit, val = stratified_split(labels, 0.1, seed=5)
    assert torch.equal(torch.sort(torch.cat([fit, val])).values, torch.arange(262))
    assert torch.bincount(labels[val], minlength=5).tolist() == [20, 5, 1, 1, 0]
    assert (torch.bincount(labels[fit], minlength=5) >= 1).all()
    again = stratified_split(labels, 0.1, seed=5)
    assert torch.equal(again[1], val)
    assert not torch.equal(stratified_split(labels, 0.1, seed=6)[1], val)


def test_bad_probe_inputs_raise():
    x, y = blobs(n=50)
    with pytest.raises(ValueError, match="positive strengths"):
        linear_probe(x, y, x, 4, wd_grid=[0.0])
    with pytest.raises(ValueError, match=r"validation fraction must be in \(0, 1\)"):
        stratified_split(y, 1.5, seed=0)
