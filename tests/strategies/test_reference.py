"""Each strategy against the loop-based reference of strategies/README.md: loss values and gradients w.r.t. the raw
inputs, and the per-sample state over several steps (visited and unvisited samples mixed)."""

from __future__ import annotations

import math

import pytest
import torch

from tempbench.strategies import Clock, create_strategy
from tests.strategies import reference as ref

GRID = [(b, d, tau) for b in (2, 3, 6) for d in (3, 16) for tau in (0.05, 0.2, 1.0)]


def make_inputs(batch: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    b = a + 0.5 * torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    return a.requires_grad_(), b.requires_grad_()


def value_and_grads(loss: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    ga, gb = torch.autograd.grad(loss, (a, b))
    return float(loss.detach()), ga, gb


def assert_same(ours: torch.Tensor, theirs: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    v1, ga1, gb1 = value_and_grads(ours, a, b)
    v2, ga2, gb2 = value_and_grads(theirs, a, b)
    assert v1 == pytest.approx(v2, rel=1e-9, abs=1e-12)
    torch.testing.assert_close(ga1, ga2, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gb1, gb2, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("batch", "dim", "tau"), GRID)
def test_fixed_matches_reference(batch: int, dim: int, tau: float) -> None:
    a, b = make_inputs(batch, dim, seed=batch * 100 + dim)
    s = create_strategy("fixed", num_samples=10, tau=tau)
    out = s(a, b, torch.arange(batch), Clock())
    assert_same(out.loss, ref.nt_xent(a, b, tau), a, b)


def test_nt_xent_identical_embeddings_closed_form() -> None:
    # every similarity is 1, so each anchor's softmax is uniform over 2B − 1 candidates (lightly's closed-form check)
    a = torch.ones(5, 4, dtype=torch.float64)
    out = create_strategy("fixed", num_samples=10, tau=0.3)(a, a.clone(), torch.arange(5), Clock())
    assert float(out.loss.detach()) == pytest.approx(math.log(2 * 5 - 1))


@pytest.mark.parametrize("tau_init", [0.05, 0.3])
def test_learnable_matches_reference_including_tau_gradient(tau_init: float) -> None:
    a, b = make_inputs(4, 8, seed=3)
    s = create_strategy("learnable", num_samples=10, tau_init=tau_init).double()
    out = s(a, b, torch.arange(4), Clock())
    theta = s.log_inv_tau.detach().clone().requires_grad_()  # θ as stored (float32-rounded at init)
    expected = ref.nt_xent(a, b, torch.exp(-theta))
    (g_ours,) = torch.autograd.grad(out.loss, s.log_inv_tau, retain_graph=True)
    (g_ref,) = torch.autograd.grad(expected, theta, retain_graph=True)
    assert float(g_ours) == pytest.approx(float(g_ref), rel=1e-8)
    assert_same(out.loss, expected, a, b)


def test_learnable_clamps_after_step() -> None:
    s = create_strategy("learnable", num_samples=10, tau_init=0.1, tau_min=0.05, tau_max=0.5)
    with torch.no_grad():
        s.log_inv_tau.fill_(math.log(1 / 0.001))  # as if a large optimiser step overshot
    a, b = make_inputs(3, 4, seed=0)
    out = s(a.float(), b.float(), torch.arange(3), Clock())
    s.update(out, torch.arange(3), Clock())
    assert float(torch.exp(-s.log_inv_tau.detach())) == pytest.approx(0.05, rel=1e-6)
    assert torch.allclose(s.temperatures(), torch.full((10,), 0.05))


@pytest.mark.parametrize(
    ("name", "hp", "step", "expected"),
    [
        ("cosine", {}, Clock(step=0, epochs=10, steps_per_epoch=5), 1.0),
        ("cosine", {}, Clock(step=5, epochs=10, steps_per_epoch=5), 0.1 + 0.45 * (1 + math.cos(2 * math.pi * 1 / 2))),
        ("cosine", {"period_epochs": 4.0}, Clock(step=3, epochs=10, steps_per_epoch=2),
         0.1 + 0.45 * (1 + math.cos(2 * math.pi * 1.5 / 4))),
        ("linear", {"tau_start": 0.5, "tau_end": 0.1}, Clock(step=0, epochs=4, steps_per_epoch=10), 0.5),
        ("linear", {"tau_start": 0.5, "tau_end": 0.1}, Clock(step=10, epochs=4, steps_per_epoch=10), 0.4),
        ("linear", {"tau_start": 0.5, "tau_end": 0.1}, Clock(step=99, epochs=4, steps_per_epoch=10), 0.1),
        ("step", {"milestones": [[0, 0.5], [2, 0.2], [3, 0.1]]}, Clock(step=19, epochs=4, steps_per_epoch=10), 0.5),
        ("step", {"milestones": [[0, 0.5], [2, 0.2], [3, 0.1]]}, Clock(step=20, epochs=4, steps_per_epoch=10), 0.2),
        ("step", {"milestones": [[1, 0.3], [2, 0.2]]}, Clock(step=0, epochs=4, steps_per_epoch=10), 0.3),
        ("step", {}, Clock(step=30, epochs=4, steps_per_epoch=10), 0.1),  # default: 0.1 from 3/4 of the run
    ],
)
def test_schedules_follow_their_formula(name: str, hp: dict, step: Clock, expected: float) -> None:
    a, b = make_inputs(3, 5, seed=1)
    s = create_strategy(name, num_samples=10, **hp)
    out = s(a, b, torch.arange(3), step)
    assert float(out.tau[0]) == pytest.approx(expected, rel=1e-12)
    assert_same(out.loss, ref.nt_xent(a, b, expected), a, b)
    s.update(out, torch.arange(3), step)
    assert torch.allclose(s.temperatures(), torch.full((10,), expected, dtype=torch.float32))


# batches over 12 samples: the later ones mix visited and never-visited samples
BATCHES = [[0, 1, 2, 3], [4, 5, 6, 7], [2, 8, 0, 9], [11, 3, 5, 10], [1, 2, 3, 4]]


@pytest.mark.parametrize("first_visit", ["sample", "batch", "none"])
@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5])
@pytest.mark.parametrize("gamma", [0.9, 0.3, 1.0])
def test_sogclr_matches_reference_over_steps(tau: float, gamma: float, first_visit: str) -> None:
    s = create_strategy("sogclr", num_samples=12, tau=tau, gamma=gamma, first_visit=first_visit).double()
    u: dict[int, float] = {}
    for t, batch in enumerate(BATCHES):
        a, b = make_inputs(len(batch), 6, seed=10 + t)
        idx = torch.tensor(batch)
        out = s(a, b, idx, Clock(step=t))
        expected, new_u, _ = ref.sog_step(a, b, batch, u, dict.fromkeys(range(12), tau), gamma,
                                          first_visit=first_visit)
        assert_same(out.loss, expected, a, b)
        s.update(out, idx, Clock(step=t))
        u.update(new_u)
        for sample, value in u.items():
            assert float(s.log_u[sample].exp()) == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize("preset", ["authors", "libauc"])
@pytest.mark.parametrize("overrides", [{}, {"gamma": 1.0, "grad_clip": 0.05}, {"tau_init": 0.05, "eta": 0.2},
                                       {"first_visit": "none"}, {"first_visit": "batch"}])
def test_isogclr_matches_reference_over_steps(preset: str, overrides: dict) -> None:
    s = create_strategy("isogclr", num_samples=12, preset=preset, **overrides).double()
    c = s.config
    u: dict[int, float] = {}
    tau = {i: float(t) for i, t in enumerate(s.tau)}  # τ_init as stored (float32-rounded at init)
    m: dict[int, float] = {}
    for t, batch in enumerate(BATCHES):
        a, b = make_inputs(len(batch), 6, seed=20 + t)
        idx = torch.tensor(batch)
        out = s(a, b, idx, Clock(step=t))
        expected, new_u, grads = ref.sog_step(a, b, batch, u, tau, c.gamma, c.rho, c.grad_clip, c.first_visit)
        assert_same(out.loss, expected, a, b)
        torch.testing.assert_close(out.tau, torch.tensor([tau[i] for i in batch], dtype=torch.float64))
        torch.testing.assert_close(out.saved["tau_grad"], torch.tensor([grads[i] for i in batch],
                                                                        dtype=torch.float64), rtol=1e-9, atol=1e-12)
        s.update(out, idx, Clock(step=t))
        u.update(new_u)
        ref.tau_momentum_step(tau, m, grads, c.eta, c.beta, c.tau_min, c.tau_max)
        torch.testing.assert_close(s.temperatures(), torch.tensor([tau[i] for i in range(12)], dtype=torch.float64))
        torch.testing.assert_close(s.tau_grad_momentum, torch.tensor([m.get(i, 0.0) for i in range(12)],
                                                                     dtype=torch.float64))


def test_isogclr_libauc_preset_matches_libauc_step_for_step() -> None:
    """LibAUC 2.0.1 GCLoss_v1 semantics, on epoch-partitioned batches (every batch all-new or all-visited, where the
    library's batch-wide first-visit rule and ours coincide): weight gradients and τ trajectory agree."""
    n, batch = 12, 4
    s = create_strategy("isogclr", num_samples=n, preset="libauc").double()
    c = s.config
    state = {"u": torch.zeros(n, dtype=torch.float64), "tau": s.tau.clone(),
             "grad_tau": torch.zeros(n, dtype=torch.float64)}
    gen = torch.Generator().manual_seed(0)
    for t in range(3 * n // batch):  # three epochs
        if t % (n // batch) == 0:
            order = torch.randperm(n, generator=gen)
        idx = order[(t % (n // batch)) * batch:][:batch]
        a, b = make_inputs(batch, 8, seed=40 + t)
        out = s(a, b, idx, Clock(step=t))
        expected = ref.libauc_gcloss_v1_step(a, b, idx.tolist(), state, c.gamma, c.rho, c.eta, c.beta,
                                             c.tau_min, c.tau_max)
        assert_same(out.loss, expected, a, b)
        s.update(out, idx, Clock(step=t))
        torch.testing.assert_close(s.temperatures(), state["tau"], rtol=1e-9, atol=1e-12)
    assert not torch.allclose(state["tau"], torch.full((n,), c.tau_init, dtype=torch.float64))  # τ really moved


def test_batch_first_visit_is_libauc_step_for_step_on_drop_last_permutations() -> None:
    """13 samples, batch 4, drop_last: each epoch leaves one sample out, which later first appears in a batch of
    visited samples. There LibAUC 2.0.1's batch-wide rule and the per-sample rule differ; `first_visit="batch"`
    (the libauc preset) follows LibAUC exactly, and the default per-sample rule does not."""
    n, batch = 13, 4
    batches = []
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):  # four epochs of drop_last permutations
        order = torch.randperm(n, generator=gen)
        batches += [order[k * batch:(k + 1) * batch] for k in range(n // batch)]
    assert any(len(set(b.tolist()) & seen) for seen, b in _first_mixed(batches))  # a mixed batch occurs
    results = {}
    for rule in ("batch", "sample"):
        s = create_strategy("isogclr", num_samples=n, preset="libauc", first_visit=rule).double()
        c = s.config
        state = {"u": torch.zeros(n, dtype=torch.float64), "tau": s.tau.clone(),
                 "grad_tau": torch.zeros(n, dtype=torch.float64)}
        gaps = []
        for t, idx in enumerate(batches):
            a, b = make_inputs(batch, 8, seed=60 + t)
            out = s(a, b, idx, Clock(step=t))
            expected = ref.libauc_gcloss_v1_step(a, b, idx.tolist(), state, c.gamma, c.rho, c.eta, c.beta,
                                                 c.tau_min, c.tau_max)
            gaps.append(abs(float(out.loss.detach()) - float(expected.detach())))
            s.update(out, idx, Clock(step=t))
            gaps.append(float((s.temperatures() - state["tau"]).abs().max()))
        results[rule] = max(gaps)
    assert results["batch"] < 1e-9
    assert results["sample"] > 1e-6  # the rules really differ on these batches


def _first_mixed(batches: list[torch.Tensor]) -> list[tuple[set[int], torch.Tensor]]:
    """(samples seen before, batch) for every batch that holds both seen and unseen samples."""
    seen: set[int] = set()
    out = []
    for b in batches:
        members = set(b.tolist())
        if members & seen and members - seen:
            out.append((set(seen), b))
        seen |= members
    return out
