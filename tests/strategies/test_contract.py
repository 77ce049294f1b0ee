"""Contract tests, parametrised over every registered strategy (built-ins and the entry-point plugin in tests/plugin):
a new strategy gets all of them without writing a test."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from tempbench.strategies import Step, create_strategy, get_strategy_class, list_strategies

NAMES = list_strategies()
N = 40


def test_plugin_strategy_is_registered_through_its_entry_point() -> None:
    assert "example_decoupled" in NAMES
    assert {"fixed", "learnable", "cosine", "linear", "step", "sogclr", "isogclr"} <= set(NAMES)


def batches(steps: int, batch: int = 8, dim: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        idx = torch.randperm(N, generator=gen)[:batch]
        a = torch.randn(batch, dim, generator=gen)
        out.append((a, a + 0.3 * torch.randn(batch, dim, generator=gen), idx))
    return out


def run_steps(strategy, data, start: int = 0) -> list[torch.Tensor]:
    """Train free embeddings' stand-ins: here the strategy alone, with its own params under plain SGD."""
    opt = torch.optim.SGD(strategy.parameters(), lr=0.05) if list(strategy.parameters()) else None
    losses = []
    for t, (a, b, idx) in enumerate(data, start=start):
        step = Step(step=t, epoch=t // 5, epochs=4, steps_per_epoch=5)
        out = strategy(a, b, idx, step)
        if opt is not None:
            opt.zero_grad()
            out.loss.backward()
            opt.step()
        strategy.update(out, idx, step)
        losses.append(out.loss.detach())
    return losses


@pytest.mark.parametrize("name", NAMES)
def test_finite_loss_and_temperatures_within_bounds(name: str) -> None:
    s = create_strategy(name, num_samples=N)
    lo, hi = s.tau_bounds()
    for t, (a, b, idx) in enumerate(batches(6)):
        step = Step(step=t, epoch=t // 2, epochs=3, steps_per_epoch=2)
        out = s(a, b, idx, step)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        assert out.tau.shape == (8,)
        assert torch.all((out.tau >= lo - 1e-6) & (out.tau <= hi + 1e-6))
        assert all(v.ndim == 0 for v in out.logs.values())
        s.update(out, idx, step)
        temps = s.temperatures()
        assert temps.shape == (N,) and torch.all((temps >= lo - 1e-6) & (temps <= hi + 1e-6))


@pytest.mark.parametrize("name", NAMES)
def test_loss_falls_when_free_embeddings_are_optimised(name: str) -> None:
    gen = torch.Generator().manual_seed(1)
    n, dim = 16, 8
    emb1 = torch.randn(n, dim, generator=gen).requires_grad_()
    emb2 = torch.randn(n, dim, generator=gen).requires_grad_()
    s = create_strategy(name, num_samples=n)
    opt = torch.optim.SGD([emb1, emb2, *s.parameters()], lr=0.5)
    idx = torch.arange(n)
    losses = []
    for t in range(50):
        step = Step(step=t, epochs=50, steps_per_epoch=1)
        out = s(emb1, emb2, idx, step)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        s.update(out, idx, step)
        losses.append(float(out.loss.detach()))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_resumes_bit_identically(name: str) -> None:
    data = batches(10, seed=2)
    uninterrupted = create_strategy(name, num_samples=N)
    losses = run_steps(uninterrupted, data)

    first = create_strategy(name, num_samples=N)
    run_steps(first, data[:5])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = create_strategy(name, num_samples=N)
    resumed.load_state_dict(torch.load(buffer))
    resumed_losses = run_steps(resumed, data[5:], start=5)

    assert all(torch.equal(x, y) for x, y in zip(losses[5:], resumed_losses))
    for (k, v), (k2, v2) in zip(uninterrupted.state_dict().items(), resumed.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


@pytest.mark.parametrize("name", NAMES)
def test_to_moves_all_state(name: str) -> None:
    s = create_strategy(name, num_samples=N).to(torch.float64)
    assert all(t.dtype == torch.float64 for t in [*s.buffers(), *s.parameters()] if t.is_floating_point())
    a, b, idx = batches(1)[0]
    out = s(a.double(), b.double(), idx, Step())
    assert out.loss.dtype == torch.float64
    if torch.cuda.is_available():
        s = s.to("cuda")
        assert all(t.device.type == "cuda" for t in [*s.buffers(), *s.parameters()])
        out = s(a.cuda(), b.cuda(), idx.cuda(), Step())
        s.update(out, idx.cuda(), Step())
        assert s.temperatures().device.type == "cuda"


def tiny_tau_hparams(name: str) -> dict:
    """Every τ-valued hyperparameter of the strategy set to 0.005 (the contract's smallest temperature)."""
    fields = {f.name for f in dataclasses.fields(get_strategy_class(name).Config)}
    hp = {f: 0.005 for f in fields if f.startswith("tau") and f != "tau_lr"}
    if "milestones" in fields:
        hp["milestones"] = [[0, 0.005]]
    return hp


@pytest.mark.parametrize("name", NAMES)
def test_finite_under_bf16_autocast_at_tau_0_005(name: str) -> None:
    s = create_strategy(name, num_samples=N, **tiny_tau_hparams(name))
    assert s.tau_bounds()[0] == pytest.approx(0.005)
    linear = torch.nn.Linear(16, 16)
    for t, (a, b, idx) in enumerate(batches(3, seed=3)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fa, fb = linear(a), linear(b)  # bf16 features, as an autocast encoder gives
            assert fa.dtype == torch.bfloat16
            out = s(fa, fb, idx, Step(step=t))
        assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
        out.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in linear.parameters())
        linear.zero_grad()
        s.update(out, idx, Step(step=t))
        assert torch.isfinite(s.temperatures()).all()
