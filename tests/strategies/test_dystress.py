"""`dystress`: the spec's worked examples (docs/new-strategies.md §3), a loop reference from the paper's equations
(values, gradients and the reported τ, float64), closed forms, and step-for-step agreement with a re-implementation
of the authors' `TSNTXentLoss` (tests/strategies/reference_new_b.py). `authors_gaps` returns the largest relative
differences, which README.md quotes."""

from __future__ import annotations

import math

import pytest
import torch

from tempbench.strategies import Clock, create_strategy
from tempbench.strategies.dystress import pair_temperature
from tests.strategies.reference_new_b import DySTreSSAuthors, dystress_loop, dystress_tau
from tests.strategies.test_reference import make_inputs

# The spec's shared input (raw; the strategy normalises it), B = 3, d = 3
SPEC_A = [[1.0, 0.2, -0.3], [0.1, 1.0, 0.4], [-0.5, 0.3, 1.0]]
SPEC_B = [[0.9, -0.1, 0.2], [0.3, 0.8, -0.2], [-0.2, 0.5, 0.9]]
PAIRINGS = ("views", "image_text")


def dystress(pairing: str, n: int = 12, dtype: torch.dtype = torch.float64, **hp):
    return create_strategy("dystress", num_samples=n, pairing=pairing, **hp).to(dtype)


def grads(loss: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat(torch.autograd.grad(loss, (a, b)))


def value(x: torch.Tensor) -> float:
    return float(x.detach())


def relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.mark.parametrize(("pairing", "tau_min", "tau_max", "expected"), [
    ("views", 0.1, 0.2, 0.429665), ("views", 0.07, 0.2, 0.513427),
    ("image_text", 0.1, 0.2, 0.308710), ("image_text", 0.07, 0.2, 0.345762),
])
def test_spec_worked_examples(pairing: str, tau_min: float, tau_max: float, expected: float) -> None:
    for dtype, tol in [(torch.float64, 1e-6), (torch.float32, 1e-5 * expected)]:
        a, b = torch.tensor(SPEC_A, dtype=dtype), torch.tensor(SPEC_B, dtype=dtype)
        out = dystress(pairing, n=3, dtype=dtype, tau_min=tau_min, tau_max=tau_max)(a, b, torch.arange(3), Clock())
        assert float(out.loss) == pytest.approx(expected, abs=tol)


def test_spec_positive_temperatures() -> None:
    """τ(s⁺) = [0.193181, 0.189525, 0.199314] at (0.1, 0.2), the same for both anchors of a sample."""
    a, b = torch.tensor(SPEC_A, dtype=torch.float64), torch.tensor(SPEC_B, dtype=torch.float64)
    positive = (torch.nn.functional.normalize(a, dim=1) * torch.nn.functional.normalize(b, dim=1)).sum(dim=1)
    tau = pair_temperature(positive, 0.1, 0.2)
    torch.testing.assert_close(tau, torch.tensor([0.193181, 0.189525, 0.199314], dtype=torch.float64), atol=1e-6,
                               rtol=0)
    out = dystress("views", n=3)(a, b, torch.arange(3), Clock())
    assert float(out.logs["tau_positive_mean"]) == pytest.approx(float(tau.mean()), rel=1e-12)


def test_temperature_profile() -> None:
    """τ_min at s = 0, τ_max at s = ±1, even in s, increasing in |s|, never outside [τ_min, τ_max]."""
    s = torch.linspace(-1.0, 1.0, 201, dtype=torch.float64)
    tau = pair_temperature(s, 0.07, 0.2)
    assert float(tau[100]) == pytest.approx(0.07, abs=1e-15)
    assert float(tau[0]) == pytest.approx(0.2, abs=1e-15) and float(tau[-1]) == pytest.approx(0.2, abs=1e-15)
    torch.testing.assert_close(tau, tau.flip(0), rtol=0, atol=1e-15)
    assert torch.all(tau[101:].diff() > 0) and torch.all((tau >= 0.07) & (tau <= 0.2 + 1e-16))
    expected = torch.tensor([dystress_tau(float(x), 0.07, 0.2) for x in s], dtype=torch.float64)
    torch.testing.assert_close(tau, expected, rtol=0, atol=1e-15)  # their form = the paper's ½Δ(1 − cos πs)


@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize(("tau_min", "tau_max"), [(0.1, 0.2), (0.07, 0.2), (0.02, 0.5)])
def test_matches_loop_reference(pairing: str, tau_min: float, tau_max: float) -> None:
    """Value, gradient (τ detached in both) and the reported per-sample mean τ, float64."""
    batch, n = 5, 12
    a, b = make_inputs(batch, 7, seed=11)
    idx = torch.tensor([3, 0, 9, 4, 7])
    s = dystress(pairing, n=n, tau_min=tau_min, tau_max=tau_max)
    out = s(a, b, idx, Clock())
    loss, mean_tau = dystress_loop(a, b, tau_min, tau_max, pairing)
    assert value(out.loss) == pytest.approx(value(loss), rel=1e-12)
    torch.testing.assert_close(grads(out.loss, a, b), grads(loss, a, b), rtol=1e-10, atol=1e-12)
    expected = torch.tensor(mean_tau, dtype=torch.float64)
    expected = expected[:batch] if pairing == "views" else expected.view(2, batch).T  # view 1; [image, text]
    torch.testing.assert_close(out.tau, expected, rtol=1e-12, atol=0)
    s.update(out, idx, Clock())
    temps = s.temperatures()
    torch.testing.assert_close(temps[idx], expected, rtol=1e-12, atol=0)
    unvisited = torch.ones(n, dtype=torch.bool).index_fill_(0, idx, False)
    torch.testing.assert_close(temps[unvisited], torch.full_like(temps[unvisited], tau_min))  # τ(0), unvisited


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_closed_forms(pairing: str) -> None:
    """Identical features: every s = 1, τ = τ_max, L = log(C), C the candidates (2B − 1 or B). Orthonormal
    (z1 = z2 = e_i): positives at τ_max, negatives s = 0 at τ_min, L = log(1 + (C − 1) e^{−1/τ_max})."""
    batch, tau_min, tau_max = 4, 0.07, 0.3
    cands = 2 * batch - 1 if pairing == "views" else batch
    s = dystress(pairing, tau_min=tau_min, tau_max=tau_max)
    ones = torch.ones(batch, 5, dtype=torch.float64)
    out = s(ones, ones, torch.arange(batch), Clock())
    assert float(out.loss) == pytest.approx(math.log(cands), rel=1e-12)
    torch.testing.assert_close(out.tau, torch.full_like(out.tau, tau_max), rtol=1e-12, atol=0)
    eye = torch.eye(batch, 6, dtype=torch.float64)
    out = s(eye, eye, torch.arange(batch), Clock())
    assert float(out.loss) == pytest.approx(math.log1p((cands - 1) * math.exp(-1.0 / tau_max)), rel=1e-12)
    mean_tau = (tau_max + (cands - 1) * tau_min) / cands
    torch.testing.assert_close(out.tau, torch.full_like(out.tau, mean_tau), rtol=1e-12, atol=0)


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_constant_profile_is_fixed(pairing: str) -> None:
    """τ_min = τ_max = t is `fixed` at τ = t (NT-Xent, CLIP's cross-entropy): value and gradient."""
    a, b = make_inputs(6, 5, seed=3)
    ours = dystress(pairing, tau_min=0.15, tau_max=0.15)(a, b, torch.arange(6), Clock()).loss
    fixed = create_strategy("fixed", num_samples=12, pairing=pairing, tau=0.15).double()(a, b, torch.arange(6),
                                                                                         Clock()).loss
    assert value(ours) == pytest.approx(value(fixed), rel=1e-12)
    torch.testing.assert_close(grads(ours, a, b), grads(fixed, a, b), rtol=1e-10, atol=1e-13)


def test_tau_is_detached() -> None:
    """A gradient through τ(s) would be a different method: the gradient differs from the one with τ attached."""
    a, b = make_inputs(5, 7, seed=4)
    ours = grads(dystress("views")(a, b, torch.arange(5), Clock()).loss, a, b)
    z = torch.nn.functional.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T
    logits = (sim / pair_temperature(sim, 0.1, 0.2)).masked_fill(torch.eye(10, dtype=torch.bool), float("-inf"))
    attached = torch.nn.functional.cross_entropy(logits, (torch.arange(10) + 5) % 10)
    assert relative(ours, grads(attached, a, b)) > 1e-2


def authors_gaps(steps: int = 20, dtype: torch.dtype = torch.float64, tau_min: float = 0.1, tau_max: float = 0.2,
                 pi_dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Free embeddings trained by SGD through ours (views) and through the authors' `TSNTXentLoss` arithmetic from
    the same start: max relative difference of loss and gradient over the steps, and of the embeddings at the end."""
    gen = torch.Generator().manual_seed(7)
    start = [torch.randn(16, 8, generator=gen, dtype=torch.float64) for _ in range(2)]
    ours_emb = [x.to(dtype).clone().requires_grad_() for x in start]
    theirs_emb = [x.to(dtype).clone().requires_grad_() for x in start]
    ours = dystress("views", n=16, dtype=dtype, tau_min=tau_min, tau_max=tau_max)
    theirs = DySTreSSAuthors(tau_min, tau_max, pi_dtype)
    opts = [torch.optim.SGD(ours_emb, lr=0.5), torch.optim.SGD(theirs_emb, lr=0.5)]
    gaps = {"loss": 0.0, "grad": 0.0, "embeddings": 0.0}
    for t in range(steps):
        idx = torch.randperm(16, generator=gen)[:8]
        l_ours = ours(ours_emb[0][idx], ours_emb[1][idx], idx, Clock(step=t)).loss
        l_theirs = theirs(theirs_emb[0][idx], theirs_emb[1][idx])
        for opt, loss in zip(opts, (l_ours, l_theirs)):
            opt.zero_grad()
            loss.backward()
        gaps["loss"] = max(gaps["loss"], abs(value(l_ours) - value(l_theirs)) / abs(value(l_theirs)))
        g_ours, g_theirs = (torch.cat([e.grad for e in embs]) for embs in (ours_emb, theirs_emb))
        gaps["grad"] = max(gaps["grad"], relative(g_ours, g_theirs))
        for opt in opts:
            opt.step()
    gaps["embeddings"] = relative(torch.cat(ours_emb).detach(), torch.cat(theirs_emb).detach())
    return gaps


@pytest.mark.parametrize(("tau_min", "tau_max"), [(0.1, 0.2), (0.07, 0.2)])
def test_matches_authors_code_step_for_step(tau_min: float, tau_max: float) -> None:
    """float64: the only difference is their float32 π (`torch.tensor(np.pi)`) inside τ; float32: the same π."""
    gaps = authors_gaps(tau_min=tau_min, tau_max=tau_max)
    assert gaps["loss"] < 1e-7 and gaps["grad"] < 1e-6 and gaps["embeddings"] < 1e-7, gaps
    exact_pi = authors_gaps(tau_min=tau_min, tau_max=tau_max, pi_dtype=torch.float64)
    assert exact_pi["loss"] < 1e-13 and exact_pi["grad"] < 1e-12 and exact_pi["embeddings"] < 1e-13, exact_pi
    gaps32 = authors_gaps(dtype=torch.float32, tau_min=tau_min, tau_max=tau_max)
    assert gaps32["loss"] < 1e-6 and gaps32["grad"] < 1e-5 and gaps32["embeddings"] < 1e-5, gaps32
