"""The checks that follow from the maths (strategies/README.md, end of the `isogclr` section)."""

from __future__ import annotations

import torch

from tempbench.strategies import Clock, create_strategy
from tests.strategies import reference as ref
from tests.strategies.test_reference import make_inputs


def grads(loss: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat(torch.autograd.grad(loss, (a, b)))


def test_gamma_one_gradient_is_tau_times_decoupled_loss_gradient() -> None:
    tau = 0.2
    for name, hp in [("sogclr", {"tau": tau, "gamma": 1.0}),
                     ("isogclr", {"tau_init": tau, "gamma": 1.0, "eta": 0.0})]:
        a, b = make_inputs(5, 7, seed=0)
        s = create_strategy(name, num_samples=20, **hp).double()
        # a visited state must not matter when γ = 1
        s.update(s(a, b, torch.arange(5), Clock()), torch.arange(5), Clock())
        out = s(a, b, torch.arange(5), Clock())
        torch.testing.assert_close(grads(out.loss, a, b), tau * grads(ref.decoupled(a, b, tau), a, b))


def test_sogclr_and_isogclr_agree_when_tau_is_frozen() -> None:
    sog = create_strategy("sogclr", num_samples=20, tau=0.3, gamma=0.7).double()
    iso = create_strategy("isogclr", num_samples=20, tau_init=0.3, gamma=0.7, eta=0.0).double()
    iso.tau.fill_(0.3)  # the float64 value, as sogclr uses
    for t, batch in enumerate([[0, 1, 2, 3], [2, 3, 4, 5], [5, 0, 6, 7]]):
        a, b = make_inputs(4, 6, seed=t)
        idx = torch.tensor(batch)
        o1, o2 = sog(a, b, idx, Clock(step=t)), iso(a, b, idx, Clock(step=t))
        torch.testing.assert_close(o1.loss, o2.loss)
        torch.testing.assert_close(grads(o1.loss, a, b), grads(o2.loss, a, b))
        sog.update(o1, idx, Clock(step=t))
        iso.update(o2, idx, Clock(step=t))
    torch.testing.assert_close(sog.log_u, iso.log_u)
    assert torch.all(iso.tau == 0.3)


def test_tau_gradient_equals_finite_difference_of_robust_objective() -> None:
    """γ = 1, no clip: G_i = ρ − KL(softmax(s/τ_i) ‖ uniform) = ∂/∂τ [τ log mean exp(h/τ) + τρ], h = s − s⁺."""
    rho, tau, eps = 0.35, 0.15, 1e-6
    a, b = make_inputs(4, 5, seed=7)
    s = create_strategy("isogclr", num_samples=8, tau_init=tau, gamma=1.0, rho=rho, grad_clip=None).double()
    s.tau.fill_(tau)
    out = s(a.detach(), b.detach(), torch.arange(4), Clock())
    rows = ref.anchors(a.detach(), b.detach())
    batch = 4
    for i in range(batch):
        fd = 0.0
        for _, pos, _, negs in (rows[i], rows[batch + i]):
            h = [float(n - pos) for n in negs]
            fd += 0.5 * (ref.robust_objective(h, tau + eps, rho) - ref.robust_objective(h, tau - eps, rho)) / (2 * eps)
        assert abs(float(out.saved["tau_grad"][i]) - fd) < 1e-6


def test_equal_negatives_drive_tau_to_tau_min() -> None:
    # orthonormal features: every negative similarity is 0 -> KL = 0 -> G = ρ > 0 -> τ falls until clamped
    batch = 4
    z = torch.eye(batch, 8)
    s = create_strategy("isogclr", num_samples=batch, tau_init=0.5, tau_min=0.05, rho=0.4, eta=0.1)
    idx = torch.arange(batch)
    for t in range(40):
        out = s(z, z.clone(), idx, Clock(step=t))
        torch.testing.assert_close(out.saved["tau_grad"], torch.full((batch,), 0.4))
        s.update(out, idx, Clock(step=t))
    assert torch.all(s.temperatures() == torch.tensor(0.05))


def test_tau_stays_within_bounds_and_untouched_samples_keep_state() -> None:
    n = 64
    s = create_strategy("isogclr", num_samples=n, tau_min=0.1, tau_max=0.3, tau_init=0.2, eta=1.0, grad_clip=None)
    gen = torch.Generator().manual_seed(0)
    for t in range(30):
        idx = torch.randperm(n, generator=gen)[:8]
        a, b = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
        before = {k: v.clone() for k, v in s.state_dict().items()}
        out = s(a, b, idx, Clock(step=t))
        s.update(out, idx, Clock(step=t))
        assert torch.all((s.tau >= 0.1) & (s.tau <= 0.3))
        untouched = torch.ones(n, dtype=torch.bool)
        untouched[idx] = False
        for k, v in s.state_dict().items():
            assert torch.equal(v[untouched], before[k][untouched]), k
    assert (s.tau == 0.1).any() or (s.tau == 0.3).any()  # η = 1 really pushed some τ to a bound


def test_log_domain_stays_finite_at_tiny_tau() -> None:
    # exp(1/0.005) overflows float32; the log-domain estimator must not
    a = torch.randn(16, 32)
    b = a + 0.01 * torch.randn(16, 32)
    s = create_strategy("isogclr", num_samples=16, tau_init=0.005, tau_min=0.005)
    out = s(a.requires_grad_(), b, torch.arange(16), Clock())
    out.loss.backward()
    s.update(out, torch.arange(16), Clock())
    assert torch.isfinite(out.loss) and torch.isfinite(a.grad).all() and torch.isfinite(s.log_u).all()
