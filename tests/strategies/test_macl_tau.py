"""`macl` and `tau_uncertainty` against loop references (strategies/README.md) and their closed forms, for both
pairings (the image_text forms are this project's adaptation)."""

from __future__ import annotations

import math

import pytest
import torch

from tempbench.strategies import Clock, create_strategy
from tests.strategies import reference_bimodal as refb
from tests.strategies.test_reference import assert_same, make_inputs

CASES = [(b, d) for b in (2, 3, 6) for d in (3, 16)]
MACL_HP = [{}, {"tau_0": 0.2, "alpha": 0.9, "a_0": 0.05}, {"tau_0": 0.05, "alpha": 0.0}]


@pytest.mark.parametrize("hp", MACL_HP)
@pytest.mark.parametrize(("batch", "dim"), CASES)
def test_macl_views_matches_lightly_form(batch: int, dim: int, hp: dict) -> None:
    a, b = make_inputs(batch, dim, seed=batch + dim)
    s = create_strategy("macl", num_samples=10, **hp)
    c = s.config
    out = s(a, b, torch.arange(batch), Clock())
    assert_same(out.loss, refb.macl_views(a, b, c.tau_0, c.alpha, c.a_0), a, b)
    z1, z2 = torch.nn.functional.normalize(a.detach(), dim=1), torch.nn.functional.normalize(b.detach(), dim=1)
    align = float((z1 * z2).sum(1).mean())
    assert float(out.logs["tau"]) == pytest.approx(c.tau_0 * (1 + c.alpha * (align - c.a_0)), rel=1e-12)


@pytest.mark.parametrize("hp", MACL_HP)
@pytest.mark.parametrize(("batch", "dim"), CASES)
def test_macl_image_text_matches_loop(batch: int, dim: int, hp: dict) -> None:
    a, b = make_inputs(batch, dim, seed=batch * dim)
    s = create_strategy("macl", num_samples=10, pairing="image_text", **hp)
    c = s.config
    out = s(a, b, torch.arange(batch), Clock())
    assert_same(out.loss, refb.macl_image_text(a, b, c.tau_0, c.alpha, c.a_0), a, b)
    assert out.tau.shape == (batch, 2)


def test_macl_defaults_bounds_and_temperature_report() -> None:
    s = create_strategy("macl", num_samples=6)
    assert (s.config.tau_0, s.config.alpha, s.config.a_0) == (0.1, 0.5, 0.0)
    assert s.tau_bounds() == pytest.approx((0.05, 0.15))
    assert torch.all(s.temperatures() == 0.1)  # τ_0 before any step
    a, b = make_inputs(4, 5, seed=0)
    out = s(a.float(), b.float(), torch.arange(4), Clock())
    s.update(out, torch.arange(4), Clock())
    assert torch.allclose(s.temperatures(), out.logs["tau"].expand(6))
    assert not out.logs["tau"].requires_grad  # A is detached: τ gets no gradient


@pytest.mark.parametrize("pairing", ["views", "image_text"])
def test_macl_identical_and_orthonormal_closed_forms(pairing: str) -> None:
    batch = 5
    candidates = batch if pairing == "image_text" else 2 * batch - 1
    s = create_strategy("macl", num_samples=batch, pairing=pairing).double()
    same = torch.ones(batch, 4, dtype=torch.float64)
    out = s(same, same.clone(), torch.arange(batch), Clock())
    weight = 1 / (1 - 1 / candidates + 1e-8)
    assert float(out.loss) == pytest.approx(weight * math.log(candidates), rel=1e-12)
    eye = torch.eye(batch, 8, dtype=torch.float64)
    out = s(eye, eye.clone(), torch.arange(batch), Clock())
    tau = 0.1 * (1 + 0.5 * 1.0)  # A = 1
    prob = math.exp(1 / tau) / (math.exp(1 / tau) + candidates - 1)
    assert float(out.loss) == pytest.approx(-math.log(prob) / (1 - prob + 1e-8), rel=1e-10)


@pytest.mark.parametrize("positive_kappa", ["anchor", "view1"])
@pytest.mark.parametrize(("batch", "dim"), CASES)
def test_tau_uncertainty_views_matches_the_authors_form(batch: int, dim: int, positive_kappa: str) -> None:
    a, b = make_inputs(batch, dim + 1, seed=3 * batch + dim)
    s = create_strategy("tau_uncertainty", num_samples=10, tau=0.1, positive_kappa=positive_kappa)
    out = s(a, b, torch.arange(batch), Clock())
    assert_same(out.loss, refb.tau_views(a, b, 0.1, 1e-6, positive_kappa), a, b)
    torch.testing.assert_close(out.tau, (0.1 / torch.sigmoid(a[:, -1])).detach())


@pytest.mark.parametrize(("batch", "dim"), CASES)
def test_tau_uncertainty_image_text_matches_loop(batch: int, dim: int) -> None:
    a, b = make_inputs(batch, dim + 1, seed=5 * batch + dim)
    s = create_strategy("tau_uncertainty", num_samples=10, pairing="image_text", tau=0.05)
    out = s(a, b, torch.arange(batch), Clock())
    assert_same(out.loss, refb.tau_image_text(a, b, 0.05, 1e-6), a, b)
    expected = torch.stack([0.05 / torch.sigmoid(a[:, -1]), 0.05 / torch.sigmoid(b[:, -1])], dim=1).detach()
    torch.testing.assert_close(out.tau, expected)


def test_tau_uncertainty_trains_the_extra_column() -> None:
    a, b = make_inputs(4, 6, seed=1)
    out = create_strategy("tau_uncertainty", num_samples=4).double()(a, b, torch.arange(4), Clock())
    ga, gb = torch.autograd.grad(out.loss, (a, b))
    assert ga[:, -1].abs().max() > 0 and gb[:, -1].abs().max() > 0


@pytest.mark.parametrize("pairing", ["views", "image_text"])
def test_tau_uncertainty_identical_features_closed_form(pairing: str) -> None:
    """S ≡ 1: ℓ = log K + log(1 + ε e^{−κ}/K), K the number of negatives (B − 1, or 2B − 2 for views)."""
    batch, t, eps, r = 5, 0.1, 1e-6, 0.3
    negatives = batch - 1 if pairing == "image_text" else 2 * batch - 2
    x = torch.cat([torch.ones(batch, 4), torch.full((batch, 1), r)], dim=1).double()
    out = create_strategy("tau_uncertainty", num_samples=batch, pairing=pairing, tau=t)(x, x.clone(),
                                                                                         torch.arange(batch), Clock())
    kappa = 1 / (1 + math.exp(-r)) / t
    assert float(out.loss) == pytest.approx(math.log(negatives) + math.log1p(eps * math.exp(-kappa) / negatives))


@pytest.mark.parametrize("pairing", ["views", "image_text"])
def test_tau_uncertainty_temperatures_are_the_last_seen_per_sample(pairing: str) -> None:
    s = create_strategy("tau_uncertainty", num_samples=8, pairing=pairing, tau=0.1)
    assert torch.all(s.temperatures() == 0.2)  # t/σ(0) before a sample is seen
    for t, idx in enumerate([torch.tensor([0, 1, 2]), torch.tensor([2, 3, 4])]):
        a, b = make_inputs(3, 6, seed=t)
        out = s(a.float(), b.float(), idx, Clock(step=t))
        s.update(out, idx, Clock(step=t))
        torch.testing.assert_close(s.temperatures()[idx], out.tau)
    assert torch.all(s.temperatures()[5:] == 0.2)
    assert torch.all(s.temperatures() > 0.1)  # τ_eff > t
