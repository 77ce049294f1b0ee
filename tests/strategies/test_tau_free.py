"""`tau_free` (new-strategies.md §5) against loop references of InfoNCE with the log-odds map (values and gradients),
the spec's worked examples and closed forms, the clamp near ±1, and the τ_eff that `temperatures()` reports. No
reference code exists (only the abstract and third-party implementations), so there is no library to compare with."""

from __future__ import annotations

import math

import pytest
import torch

from tempbench.strategies import Clock, create_strategy, get_strategy_class
from tempbench.strategies.tau_free import CLAMP_EPS, effective_tau
from tests.strategies import reference_new_a as refa
from tests.strategies.test_reference import assert_same, make_inputs

PAIRINGS = ["views", "image_text"]
LOOPS = {"views": refa.tau_free_views, "image_text": refa.tau_free_image_text}
RATIO_AT_CLAMP = (1 - CLAMP_EPS) / math.atanh(1 - CLAMP_EPS)  # s/atanh(s) at the clamp


def tau_free(pairing: str, num_samples: int = 10, **hp):
    return create_strategy("tau_free", num_samples=num_samples, pairing=pairing, **hp).double()


@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize(("batch", "dim"), [(2, 3), (3, 16), (6, 3), (6, 16)])
def test_matches_loop_reference(pairing: str, scale: float, batch: int, dim: int) -> None:
    a, b = make_inputs(batch, dim, seed=batch * 41 + dim)
    out = tau_free(pairing, scale=scale)(a, b, torch.arange(batch), Clock())
    assert_same(out.loss, LOOPS[pairing](a, b, scale), a, b)


@pytest.mark.parametrize(("pairing", "scale", "expected"), [
    ("views", 2.0, 0.432797), ("image_text", 2.0, 0.290050), ("views", 1.0, 0.827001), ("image_text", 1.0, 0.529464),
])
def test_worked_examples(pairing: str, scale: float, expected: float) -> None:
    a, b = refa.shared_input()
    assert tau_free(pairing, scale=scale)(a, b, torch.arange(3), Clock()).loss.item() == pytest.approx(expected,
                                                                                                       abs=1e-6)
    a32, b32 = refa.shared_input(torch.float32)
    loss32 = create_strategy("tau_free", num_samples=10, pairing=pairing, scale=scale)(a32, b32, torch.arange(3),
                                                                                       Clock()).loss
    assert loss32.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("pairing", "candidates"), [("views", lambda b: 2 * b - 1), ("image_text", lambda b: b)])
def test_orthogonal_and_identical_features_closed_forms(pairing: str, candidates) -> None:
    """Mutually orthogonal features: every logit is atanh(0) = 0. Identical ones: every s is clamped to 1 − ε, so
    every logit is equal and no gradient passes the clamp. Both give log C, C the candidates per anchor."""
    batch = 4
    eye = torch.eye(2 * batch, dtype=torch.float64)
    s = tau_free(pairing)
    out = s(eye[:batch], eye[batch:], torch.arange(batch), Clock())
    assert out.loss.item() == pytest.approx(math.log(candidates(batch)), rel=1e-12)
    torch.testing.assert_close(out.tau, torch.full(s.tau_shape(batch), 0.5, dtype=torch.float64))  # 1/scale at s⁺ = 0
    same = torch.ones(batch, 3, dtype=torch.float64, requires_grad=True)
    out = s(same, same, torch.arange(batch), Clock())
    assert out.loss.item() == pytest.approx(math.log(candidates(batch)), rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss, same)
    assert torch.all(grad == 0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("pairing", PAIRINGS)
def test_finite_as_the_positive_nears_one(pairing: str, dtype: torch.dtype) -> None:
    """s⁺ = cos θ with 1 − s⁺ = 5e-5, 4.5e-6 (inside the clamp), 5e-7 and 5e-9 (beyond it; float32 rounds the last to
    1): the loss and the features' gradients stay finite."""
    for theta in (1e-2, 3e-3, 1e-3, 1e-4):
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(4, 6, generator=gen, dtype=torch.float64)
        b = a + 0.8 * torch.randn(4, 6, generator=gen, dtype=torch.float64)
        unit = torch.nn.functional.normalize(a[0], dim=0)
        across = torch.nn.functional.normalize(torch.eye(6, dtype=torch.float64)[0] - unit[0] * unit, dim=0)
        b[0] = unit * math.cos(theta) + across * math.sin(theta)
        a, b = a.to(dtype).requires_grad_(), b.to(dtype).requires_grad_()
        out = create_strategy("tau_free", num_samples=4, pairing=pairing).to(dtype)(a, b, torch.arange(4), Clock())
        assert torch.isfinite(out.loss)
        assert all(torch.isfinite(g).all() for g in torch.autograd.grad(out.loss, (a, b)))


def test_effective_tau_is_the_constant_tau_giving_the_positive_the_same_logit() -> None:
    s = torch.tensor([-0.9, -0.3, 0.0, 1e-9, 0.3, 0.9, 0.999, 1.0], dtype=torch.float64)
    tau = effective_tau(s, 2.0)
    inside = s.abs() < 1 - CLAMP_EPS
    nonzero = inside & (s != 0)
    torch.testing.assert_close((s / tau)[nonzero], 2.0 * torch.atanh(s[nonzero]), rtol=1e-12, atol=0)
    assert tau[2].item() == 0.5 and tau[3].item() == pytest.approx(0.5)  # the limit 1/scale at s⁺ = 0
    assert tau[-1].item() == pytest.approx(RATIO_AT_CLAMP / 2.0, rel=1e-12)  # s⁺ = 1 is clamped to 1 − ε
    assert torch.equal(tau, effective_tau(-s, 2.0))  # even in s⁺
    assert torch.all(tau[3:] <= tau[2:-1])  # falls from s⁺ = 0 towards 1
    assert (tau > 0).all() and (tau <= 0.5).all()


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_temperatures_are_the_last_seen_effective_tau_per_sample(pairing: str) -> None:
    s = create_strategy("tau_free", num_samples=8, pairing=pairing, scale=4.0)
    assert torch.all(s.temperatures() == 0.25) and s.temperatures().shape == s.tau_shape(8)  # 1/scale before
    lo, hi = s.tau_bounds()
    assert (lo, hi) == (pytest.approx(RATIO_AT_CLAMP / 4.0), 0.25)
    for t, idx in enumerate([torch.tensor([0, 1, 2]), torch.tensor([2, 3, 4])]):
        a, b = make_inputs(3, 6, seed=t)
        out = s(a.float(), b.float(), idx, Clock(step=t))
        positive = (torch.nn.functional.normalize(a, dim=1) * torch.nn.functional.normalize(b, dim=1)).sum(1)
        expected = effective_tau(positive, 4.0).float()
        torch.testing.assert_close(out.tau, expected if pairing == "views" else expected[:, None].expand(-1, 2))
        s.update(out, idx, Clock(step=t))
        torch.testing.assert_close(s.temperatures()[idx], out.tau)
    assert torch.all(s.temperatures()[5:] == 0.25)
    assert torch.all((s.temperatures() >= lo) & (s.temperatures() <= hi))


def test_pinning_a_tau_sets_the_scale_whose_smallest_effective_tau_it_is() -> None:
    """The contract pins τ = 0.005: the scale (≈ 27.6) whose τ_eff at the clamp is 0.005, logits up to ±200."""
    for pairing in PAIRINGS:
        cls = get_strategy_class("tau_free", pairing)
        hp = cls.pinned_tau_hyperparameters(0.005)
        assert hp["scale"] == pytest.approx(RATIO_AT_CLAMP / 0.005)
        s = cls.create(10, **hp)
        assert s.tau_bounds()[0] == pytest.approx(0.005, rel=1e-12)
        assert hp["scale"] * math.atanh(1 - CLAMP_EPS) == pytest.approx(1 / 0.005, rel=1e-5)
        assert not cls.tau_hyperparameters and not list(s.parameters())
