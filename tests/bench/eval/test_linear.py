"""Linear probe: each fit reaches scikit-learn's optimum of the same objective (not just a similar accuracy), the refit
is warm-started, the λ grid brackets the chosen strength, the diagnostics say whether a fit converged, and the
validation split never sees the test set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import tempbench.eval.linear as linear
from tempbench.eval import linear_probe, prepare_features, stratified_split
from tempbench.eval.linear import GRAD_TOL, fit_logistic, predict_logistic

OBJECTIVE_RTOL = 1e-4  # our objective may exceed sklearn's optimum by this fraction of it
MIN_AGREEMENT = 0.995  # fraction of held-out points on which our argmax equals sklearn's

# sklearn's optimum (lbfgs, tol=1e-10, cold start) on long_tailed()'s first LT_CUT rows at λ=1e-6, from
# test_long_tailed_reference_is_sklearns_optimum (slow: sklearn needs ~1,500 iterations, 20-40 s here)
LT_CUT = 4800
LT_WD = 1e-6
LT_SKLEARN_OPTIMUM = 0.6152375608414766


def blobs(n=600, dim=20, num_classes=4, seed=0, spread=1.0):
    """Gaussian classes; spread 1 overlaps them (accuracy below 100 %, the penalty matters), 10 separates them."""
    gen = torch.Generator().manual_seed(seed)
    centers = spread * torch.randn(num_classes, dim, generator=gen)
    y = torch.randint(num_classes, (n,), generator=gen)
    return prepare_features(centers[y] + 1.2 * torch.randn(n, dim, generator=gen)), y


def long_tailed(n=6000, dim=256, num_classes=10, imbalance=100.0, seed=0):
    """Long-tailed Gaussian classes: counts fall exponentially from head to tail (ratio 100, as in CIFAR-10-LT) and the
    means overlap (‖μ_c‖ ≈ 0.1 against unit noise), so head classes overlap while tail classes are nearly separable,
    the ill-conditioned case in which a fixed L-BFGS budget stopped short."""
    gen = torch.Generator().manual_seed(seed)
    profile = imbalance ** (-torch.arange(num_classes) / (num_classes - 1))
    counts = torch.floor(n * profile / profile.sum()).long()
    counts[0] += n - counts.sum()
    y = torch.repeat_interleave(torch.arange(num_classes), counts)[torch.randperm(n, generator=gen)]
    centers = 0.1 * torch.randn(num_classes, dim, generator=gen) / dim**0.5
    return prepare_features(centers[y] + torch.randn(n, dim, generator=gen) / dim**0.5), y


def digits():
    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    return prepare_features(torch.tensor(x[perm], dtype=torch.float32)), torch.tensor(y[perm])


def sklearn_optimum(x, y, wd):
    """(W (d, C), b (C,)) float64 of scikit-learn's lbfgs at C = 1/(λ n), run to a tight tolerance from zero."""
    clf = LogisticRegression(C=1.0 / (wd * len(y)), tol=1e-10, max_iter=100_000)
    clf.fit(x.double().numpy(), y.numpy())
    return torch.from_numpy(clf.coef_.T.copy()), torch.from_numpy(clf.intercept_.copy())


def objective(x, y, params, wd):
    """The probe's objective written straight from its definition, mean CE(x W + b, y) + λ/2 ‖W‖², in float64:
    a reference independent of the closed form the solver uses."""
    w, b = params
    return (F.cross_entropy(x.to(torch.float64) @ w + b, y) + 0.5 * wd * w.square().sum()).item()


def agreement(params_a, params_b, x):
    return (predict_logistic(params_a, x) == predict_logistic(params_b, x)).double().mean().item()


def test_closed_form_objective_and_gradient_match_autograd():
    # the solver's private closed form (softmax minus one-hot, no autograd graph): the convergence rule reads its
    # gradient, so it is checked against autograd directly rather than only through the fits
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 6, generator=gen, dtype=torch.float64), torch.randint(3, (50,), generator=gen)
    w = torch.randn(6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    reference = F.cross_entropy(x @ w + b, y) + 0.5 * 0.3 * w.square().sum()
    reference.backward()
    onehot = F.one_hot(y, 3).to(torch.float64)
    value, grad_w, grad_b = linear._objective(x, onehot, w.detach(), b.detach(), 0.3)
    assert torch.allclose(value, reference.detach()) and torch.allclose(grad_w, w.grad)
    assert torch.allclose(grad_b, b.grad)


@pytest.mark.parametrize("wd", [1e-2, 1e-4, 1e-6, pytest.param(1e-8, marks=pytest.mark.slow)])  # 1e-8: slow to converge
def test_fit_reaches_sklearns_optimum_on_digits(wd):
    x, y = digits()
    cut = int(0.7 * len(y))
    fit = fit_logistic(x[:cut], y[:cut], 10, wd)
    reference = sklearn_optimum(x[:cut], y[:cut], wd)
    optimum = objective(x[:cut], y[:cut], reference, wd)
    assert fit.converged and fit.grad_norm <= fit.grad_tol <= GRAD_TOL
    assert fit.objective == pytest.approx(objective(x[:cut], y[:cut], fit.params, wd), rel=1e-12)
    assert fit.objective - optimum <= OBJECTIVE_RTOL * optimum
    assert agreement(fit.params, reference, x[cut:]) >= MIN_AGREEMENT


def test_fit_reaches_sklearns_optimum_on_long_tailed_features():
    x, y = long_tailed()
    fit = fit_logistic(x[:LT_CUT], y[:LT_CUT], 10, LT_WD)
    assert fit.converged
    assert fit.objective - LT_SKLEARN_OPTIMUM <= OBJECTIVE_RTOL * LT_SKLEARN_OPTIMUM
    assert fit.objective >= LT_SKLEARN_OPTIMUM * (1 - 1e-7)  # nothing beats the optimum: the constant fits this data


@pytest.mark.slow
def test_long_tailed_reference_is_sklearns_optimum():
    x, y = long_tailed()
    reference = sklearn_optimum(x[:LT_CUT], y[:LT_CUT], LT_WD)
    assert objective(x[:LT_CUT], y[:LT_CUT], reference, LT_WD) == pytest.approx(LT_SKLEARN_OPTIMUM, rel=1e-8)
    fit = fit_logistic(x[:LT_CUT], y[:LT_CUT], 10, LT_WD)
    assert agreement(fit.params, reference, x[LT_CUT:]) >= MIN_AGREEMENT


def test_the_iteration_cap_is_reported_not_hidden():
    x, y = digits()
    fit = fit_logistic(x, y, 10, 1e-6, max_iter=5)
    assert fit.iterations == 5 and not fit.converged and fit.grad_norm > fit.grad_tol
    probe = linear_probe(x[:1200], y[:1200], x[1200:], 10, max_iter=5)
    assert probe.iterations == 5 and not probe.converged and not probe.val_converged


def test_probe_reaches_sklearns_optimum_at_the_chosen_strength():
    x, y = digits()
    cut = int(0.7 * len(y))
    probe = linear_probe(x[:cut], y[:cut], x[cut:], 10, seed=0)
    reference = sklearn_optimum(x[:cut], y[:cut], probe.wd)
    optimum = objective(x[:cut], y[:cut], reference, probe.wd)
    assert probe.objective - optimum <= OBJECTIVE_RTOL * optimum
    assert (probe.test_pred == predict_logistic(reference, x[cut:])).double().mean().item() >= MIN_AGREEMENT


def test_probe_diagnostics():
    x, y = digits()
    probe = linear_probe(x[:1200], y[:1200], x[1200:], 10)
    assert probe.converged and probe.val_converged and probe.grad_norm <= probe.grad_tol <= GRAD_TOL
    assert isinstance(probe.iterations, int) and probe.iterations > 0
    assert math.isfinite(probe.objective) and probe.objective > 0
    assert probe.wd_grid == tuple(sorted(probe.val_by_wd)) and probe.wd_grid[0] < probe.wd < probe.wd_grid[-1]
    assert not probe.at_edge
    assert probe.val_top1 == probe.val_by_wd[probe.wd] == max(probe.val_by_wd.values())


def test_refit_is_warm_started_from_the_chosen_fit(monkeypatch):
    calls = []

    def spy(x, y, num_classes, wd, *args, **kwargs):
        fit = fit_logistic(x, y, num_classes, wd, *args, **kwargs)
        calls.append((x.shape[0], wd, kwargs.get("init"), fit))
        return fit

    monkeypatch.setattr(linear, "fit_logistic", spy)
    x, y = digits()
    probe = linear_probe(x[:1200], y[:1200], x[1200:], 10)
    n, wd, init, final = calls[-1]
    chosen = next(fit for _, w, _, fit in calls[:-1] if w == wd)
    assert n == 1200 and wd == probe.wd and init is not None
    assert torch.equal(init[0], chosen.w) and torch.equal(init[1], chosen.b)
    cold = fit_logistic(x[:1200], y[:1200], 10, wd)
    assert final.iterations < cold.iterations
    assert final.objective == pytest.approx(cold.objective, rel=OBJECTIVE_RTOL)


def test_a_strength_at_the_weak_edge_extends_the_grid():
    x, y = digits()
    probe = linear_probe(x[:1200], y[:1200], x[1200:], 10, wd_grid=(1e-2, 1e-1))
    assert 1e-3 in probe.wd_grid and probe.wd_grid[0] < probe.wd < 1e-2  # exact decades: 1e-2 / 10 is 1e-3
    assert not probe.at_edge and set(probe.val_by_wd) == set(probe.wd_grid)


def test_the_extension_stops_at_its_limit_and_flags_the_edge():
    x, y = digits()
    probe = linear_probe(x[:1200], y[:1200], x[1200:], 10, wd_grid=(1e-1, 1.0), wd_limits=(1e-2, 1.0))
    assert probe.wd_grid == (1e-2, 1e-1, 1.0) and probe.wd == 1e-2 and probe.at_edge


def test_a_tie_at_the_strong_edge_extends_upward():
    x, y = blobs(spread=10.0)  # separable: every λ scores 100 %, ties go to the strongest penalty
    probe = linear_probe(x[:400], y[:400], x[400:], 4, wd_grid=(1e-3, 1e-2), wd_limits=(1e-8, 1e-1))
    assert probe.wd_grid == (1e-3, 1e-2, 1e-1) and probe.wd == 1e-1 and probe.at_edge


def test_probe_is_deterministic_given_the_seed():
    x, y = blobs()
    a, b = (linear_probe(x[:400], y[:400], x[400:], 4, seed=3) for _ in range(2))
    assert torch.equal(a.test_pred, b.test_pred) and a.wd == b.wd and a.val_by_wd == b.val_by_wd


def test_strength_selection_never_sees_the_test_set():
    # test labels are no input at all; test features only ever meet the refitted probe, after λ is fixed
    x, y = blobs(n=500)
    base = linear_probe(x[:400], y[:400], x[400:], 4)
    other_features = prepare_features(torch.randn(100, 20, generator=torch.Generator().manual_seed(9)))
    other = linear_probe(x[:400], y[:400], other_features, 4)
    assert (other.wd, other.val_top1, other.val_by_wd) == (base.wd, base.val_top1, base.val_by_wd)
    assert other.objective == base.objective


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


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_probe_on_cuda_matches_the_cpu():
    x, y = digits()
    cpu = linear_probe(x[:1200], y[:1200], x[1200:], 10)
    gpu = linear_probe(x[:1200].cuda(), y[:1200].cuda(), x[1200:].cuda(), 10)
    assert gpu.converged and gpu.wd == cpu.wd and gpu.test_pred.is_cuda
    assert gpu.objective == pytest.approx(cpu.objective, rel=OBJECTIVE_RTOL)
    assert (gpu.test_pred.cpu() == cpu.test_pred).double().mean().item() >= MIN_AGREEMENT


def test_whitened_coordinates_are_a_change_of_variables_only():
    # (W, b) -> (V, c) -> (W, b) is the identity, and the objective and (W, b)-gradient norm the solver reads in
    # (V, c) are those of the original closed form at the same point
    x, y = long_tailed(n=400, dim=12)
    onehot = F.one_hot(y, 10).to(torch.float64)
    gen = torch.Generator().manual_seed(1)
    w, b = torch.randn(12, 10, generator=gen, dtype=torch.float64), torch.randn(10, generator=gen, dtype=torch.float64)
    problem = linear._Whitened(x, onehot, 1e-3)
    v, c = problem.inner(w, b)
    back_w, back_b = problem.outer(v.detach(), c.detach())
    assert torch.allclose(back_w, w, atol=1e-10) and torch.allclose(back_b, b, atol=1e-10)
    loss, grad_norm, grad_v, grad_c = problem.evaluate(v.detach(), c.detach())
    ref_loss, ref_w, ref_b = linear._objective(x.double(), onehot, w, b, 1e-3)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-12)
    assert grad_norm == pytest.approx(max(ref_w.abs().max().item(), ref_b.abs().max().item()), rel=1e-9)
    v_auto = v.detach().clone().requires_grad_(True)
    c_auto = c.detach().clone().requires_grad_(True)
    auto_w, auto_b = problem.outer(v_auto, c_auto)
    # the definition, differentiated through the change of variables
    (F.cross_entropy(x.double() @ auto_w + auto_b, y) + 0.5e-3 * auto_w.square().sum()).backward()
    assert torch.allclose(grad_v, v_auto.grad, atol=1e-12) and torch.allclose(grad_c, c_auto.grad, atol=1e-12)


@pytest.mark.parametrize("features", ["long_tailed", "digits"])
def test_whitened_and_plain_coordinates_reach_the_same_optimum(features):
    # whitening only changes the path: both runs meet the tolerance, at the same objective to the gap the
    # tolerance allows, with the same predictions; whitened needs fewer iterations on both the overlapping
    # long-tailed features and the separable digits pixels (where the whitening floor matters)
    x, y = long_tailed(n=3000, dim=64) if features == "long_tailed" else digits()
    cut = int(0.7 * len(y))
    whitened = fit_logistic(x[:cut], y[:cut], 10, 1e-6)
    plain = fit_logistic(x[:cut], y[:cut], 10, 1e-6, whiten=False)
    assert whitened.converged and plain.converged
    assert whitened.objective == pytest.approx(plain.objective, rel=OBJECTIVE_RTOL)
    assert agreement(whitened.params, plain.params, x[cut:]) >= MIN_AGREEMENT
    assert whitened.iterations < plain.iterations
