"""The closed forms and identities of strategies/README.md for the image–text strategies."""

from __future__ import annotations

import math

import pytest
import torch

from tempbench.strategies import Clock, create_strategy
from tests.strategies import reference_bimodal as refb
from tests.strategies.test_reference import make_inputs


def image_text(name: str, n: int = 12, **hp):
    return create_strategy(name, num_samples=n, pairing="image_text", **hp).double()


def grads(loss: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat(torch.autograd.grad(loss, (a, b)))


def identical(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image and text feature the same vector: S ≡ 1, h ≡ 0."""
    return (torch.ones(batch, 4, dtype=torch.float64).requires_grad_(),
            torch.ones(batch, 4, dtype=torch.float64).requires_grad_())


def orthonormal(batch: int, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """z_I = z_T = e_i: S_ii = 1 and h ≡ −1 on every negative."""
    return (torch.eye(batch, dim, dtype=torch.float64).requires_grad_(),
            torch.eye(batch, dim, dtype=torch.float64).requires_grad_())


@pytest.mark.parametrize("batch", [2, 5])
def test_identical_features(batch: int) -> None:
    a, b = identical(batch)
    idx = torch.arange(batch)
    clip = image_text("fixed", tau=0.05)(a, b, idx, Clock())
    assert float(clip.loss.detach()) == pytest.approx(math.log(batch), rel=1e-12)
    for name, hp in [("sogclr", {}), ("isogclr", {"rho": 2.5}), ("rgclg", {"rho": 2.5})]:
        out = image_text(name, **hp)(a, b, idx, Clock())
        assert float(out.loss.detach()) == pytest.approx(0.0, abs=1e-12)  # L_3 = 0
        assert torch.allclose(grads(out.loss, a, b), torch.zeros(2 * batch, 4, dtype=torch.float64), atol=1e-12)
        torch.testing.assert_close(out.saved["log_u"], torch.zeros(batch, 2, dtype=torch.float64))  # g = 1
    iso = image_text("isogclr", rho=2.5)(a, b, idx, Clock())
    torch.testing.assert_close(iso.saved["tau_grad"], torch.full((batch, 2), 2.5, dtype=torch.float64))  # G = ρ
    rgclg = image_text("rgclg", rho=2.5)
    out = rgclg(a, b, idx, Clock())
    tau = math.exp(-float(rgclg.log_inv_tau))
    assert float(out.saved["theta_grad"]) == pytest.approx(-tau * 2.5, rel=1e-12)  # ∂/∂θ = −τρ


@pytest.mark.parametrize(("grad_clip", "gamma"), [(None, 0.8), (1.5, 0.8), (None, 1.0)])
def test_identical_features_tau_trajectory(grad_clip: float | None, gamma: float) -> None:
    """m_0 = 0, G ≡ ρ (or the clip): τ_k = τ_0 − ηG Σ_{t=1..k} (1 − (1−β)^t) before any clamp."""
    tau_0, rho, eta, beta = 0.5, 2.0, 0.01, 0.3
    s = image_text("isogclr", n=5, tau_init=tau_0, rho=rho, eta=eta, beta=beta, gamma=gamma, grad_clip=grad_clip)
    a, b = identical(5)
    grad = rho if grad_clip is None else min(rho, grad_clip)
    for k in range(1, 7):
        s.update(s(a, b, torch.arange(5), Clock(step=k)), torch.arange(5), Clock(step=k))
        expected = tau_0 - eta * grad * sum(1 - (1 - beta) ** t for t in range(1, k + 1))
        torch.testing.assert_close(s.temperatures(), torch.full((5, 2), expected, dtype=torch.float64))


@pytest.mark.parametrize("tau", [0.01, 0.1])
def test_orthonormal_pairs(tau: float) -> None:
    batch = 5
    a, b = orthonormal(batch)
    idx = torch.arange(batch)
    clip = image_text("fixed", tau=tau)(a, b, idx, Clock())
    assert float(clip.loss.detach()) == pytest.approx(math.log1p((batch - 1) * math.exp(-1 / tau)), rel=1e-12)
    for name in ("sogclr", "isogclr"):
        out = image_text(name, tau=tau) if name == "sogclr" else image_text(name, tau_init=tau, rho=3.0)
        out = out(a, b, idx, Clock())
        assert float(out.loss.detach()) == pytest.approx(-2.0, rel=1e-12)  # L_3 = −2 at the first visit
        torch.testing.assert_close(out.saved["log_u"], torch.full((batch, 2), -1 / tau, dtype=torch.float64))
    torch.testing.assert_close(out.saved["tau_grad"], torch.full((batch, 2), 3.0, dtype=torch.float64))  # G = ρ


def test_two_pairs_give_g_equal_rho_for_any_features() -> None:
    """B = 2: one negative per anchor, so the softmax is a point mass, KL = 0 and G = ρ."""
    for seed in range(3):
        a, b = make_inputs(2, 7, seed=seed)
        out = image_text("isogclr", rho=1.7, gamma=1.0, grad_clip=None, tau_init=0.07)(a, b, torch.arange(2), Clock())
        torch.testing.assert_close(out.saved["tau_grad"], torch.full((2, 2), 1.7, dtype=torch.float64))


def test_gamma_one_gradient_is_tau_times_the_two_decoupled_losses() -> None:
    tau = 0.2
    for name, hp in [("sogclr", {"tau": tau, "gamma": 1.0}), ("isogclr", {"tau_init": tau, "gamma": 1.0, "eta": 0.0})]:
        a, b = make_inputs(5, 7, seed=0)
        s = image_text(name, **hp)
        s.update(s(a, b, torch.arange(5), Clock()), torch.arange(5), Clock())  # a visited state must not matter
        out = s(a, b, torch.arange(5), Clock())
        torch.testing.assert_close(grads(out.loss, a, b), tau * grads(refb.decoupled(a, b, tau), a, b))


def test_include_positive_gradient_is_two_tau_times_clip() -> None:
    """With the positive counted in g (the iSogCLR authors' code), γ = 1 gives ∇L_3 = 2τ ∇CLIP."""
    tau = 0.1
    a, b = make_inputs(6, 5, seed=4)
    s = image_text("sogclr", tau=tau, gamma=1.0, include_positive=True)
    out = s(a, b, torch.arange(6), Clock())
    torch.testing.assert_close(grads(out.loss, a, b), 2 * tau * grads(refb.clip(a, b, tau), a, b))


def test_sogclr_and_isogclr_agree_when_tau_is_frozen() -> None:
    sog = image_text("sogclr", tau=0.3, gamma=0.7)
    iso = image_text("isogclr", tau_init=0.3, gamma=0.7, eta=0.0)
    iso.tau.fill_(0.3)
    for t, batch in enumerate([[0, 1, 2, 3], [2, 3, 4, 5], [5, 0, 6, 7]]):
        a, b = make_inputs(4, 6, seed=t)
        idx = torch.tensor(batch)
        o1, o2 = sog(a, b, idx, Clock(step=t)), iso(a, b, idx, Clock(step=t))
        torch.testing.assert_close(grads(o1.loss, a, b), grads(o2.loss, a, b))
        sog.update(o1, idx, Clock(step=t))
        iso.update(o2, idx, Clock(step=t))
    torch.testing.assert_close(sog.log_u, iso.log_u)
    assert torch.all(iso.tau == 0.3)


def robust_term(h: list[float], tau: float, rho: float) -> float:
    """τ log mean_j exp(h_j/τ) + τρ of one anchor."""
    return tau * math.log(sum(math.exp(x / tau) for x in h) / len(h)) + tau * rho


def test_tau_gradient_is_finite_difference_of_robust_objective_on_both_sides() -> None:
    rho, tau, eps = 0.9, 0.15, 1e-6
    a, b = make_inputs(5, 6, seed=7)
    s = image_text("isogclr", tau_init=tau, gamma=1.0, rho=rho, grad_clip=None)
    s.tau.fill_(tau)
    out = s(a.detach(), b.detach(), torch.arange(5), Clock())
    for side, i, _, _, hs in refb.sides(a.detach(), b.detach()):
        h = [float(x) for x in hs]
        fd = (robust_term(h, tau + eps, rho) - robust_term(h, tau - eps, rho)) / (2 * eps)
        assert float(out.saved["tau_grad"][i, side]) == pytest.approx(fd, abs=1e-6)


def test_rgclg_theta_gradient_counts_h_hat_twice() -> None:
    """At γ = 1 the chain-rule ∂F/∂θ of F = τ[ρ + ½ mean_i(log g^I_i + log g^T_i)] is (1/2B) Σ Ĥ − τ(ρ + M);
    FastCLIP's, which rgclg follows, is that plus another (1/2B) Σ Ĥ."""
    rho, eps = 2.0, 1e-6
    a, b = make_inputs(5, 6, seed=8)
    s = image_text("rgclg", rho=rho, gamma=1.0, gamma_schedule="constant")
    out = s(a.detach(), b.detach(), torch.arange(5), Clock())
    theta = float(s.log_inv_tau)
    rows = refb.sides(a.detach(), b.detach())

    def objective(th: float) -> float:
        tau = math.exp(-th)
        log_g = [math.log(sum(math.exp(float(x) / tau) for x in hs) / len(hs)) for *_, hs in rows]
        return tau * (rho + 0.5 * sum(log_g) / 5)

    exact = (objective(theta + eps) - objective(theta - eps)) / (2 * eps)
    _, _, _, h_hat = refb.gcl_step(a.detach(), b.detach(), list(range(5)), {},
                                   {(side, i): math.exp(-theta) for side in (0, 1) for i in range(5)}, 1.0)
    assert float(out.saved["theta_grad"]) == pytest.approx(exact + sum(h_hat.values()) / 10, abs=1e-7)


def test_state_outside_the_batch_is_untouched_and_tau_within_bounds() -> None:
    n = 48
    s = create_strategy("isogclr", num_samples=n, pairing="image_text", tau_init=0.05, tau_min=0.02, tau_max=0.2,
                        eta=0.5, rho=1.0, grad_clip=None)
    gen = torch.Generator().manual_seed(0)
    for t in range(20):
        idx = torch.randperm(n, generator=gen)[:8]
        a, b = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
        before = {k: v.clone() for k, v in s.state_dict().items()}
        s.update(s(a, b, idx, Clock(step=t)), idx, Clock(step=t))
        assert torch.all((s.tau >= 0.02) & (s.tau <= 0.2))
        untouched = torch.ones(n, dtype=torch.bool)
        untouched[idx] = False
        for k, v in s.state_dict().items():
            assert torch.equal(v[untouched], before[k][untouched]), k
    assert (s.tau == 0.02).any() or (s.tau == 0.2).any()


@pytest.mark.parametrize("name", ["sogclr", "isogclr", "rgclg"])
def test_log_domain_stays_finite_at_tau_0_005(name: str) -> None:
    a = torch.randn(16, 32)
    b = a + 0.01 * torch.randn(16, 32)
    hp = {"tau": 0.005} if name == "sogclr" else {"tau_init": 0.005, "tau_min": 0.005}
    s = create_strategy(name, num_samples=16, pairing="image_text", **hp)
    out = s(a.requires_grad_(), b, torch.arange(16), Clock())
    out.loss.backward()
    s.update(out, torch.arange(16), Clock())
    assert torch.isfinite(out.loss) and torch.isfinite(a.grad).all() and torch.isfinite(s.log_u).all()
