"""Contract tests, parametrised over every registered (name, pairing) (built-ins and the entry-point plugin in
tests/plugin): a new strategy gets all of them without writing a test. Inputs have the shape of the pairing (two views,
or image and text features) and the width d + extra_outputs the strategy declares."""

from __future__ import annotations

import io

import pytest
import torch

from tempbench.strategies import PAIRINGS, Clock, get_strategy_class, list_strategies, strategy_pairings, tau_shape

PAIRS = [(name, pairing) for name in list_strategies() for pairing in strategy_pairings(name)]
IDS = [f"{name}-{pairing}" for name, pairing in PAIRS]
N = 40


def test_plugin_strategy_is_registered_through_its_entry_point() -> None:
    assert ("example_decoupled", "views") in PAIRS
    assert ("example_decoupled_pairs", "image_text") in PAIRS  # filed under the class's own `pairing`
    assert {"fixed", "learnable", "cosine", "linear", "step", "sogclr", "isogclr", "macl",
            "tau_uncertainty"} <= set(list_strategies(pairing="views"))
    assert {"fixed", "learnable", "sogclr", "isogclr", "rgclg", "macl",
            "tau_uncertainty"} <= set(list_strategies(pairing="image_text"))


def create(name: str, pairing: str, num_samples: int = N, **hp):
    cls = get_strategy_class(name, pairing)
    return cls.create(num_samples, **hp)


def batches(steps: int, batch: int = 8, dim: int = 16, seed: int = 0, extra: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """(a, b, idx) batches: b is a noisy copy of a (a second view, or a caption embedding near its image), both
    dim + extra wide."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        idx = torch.randperm(N, generator=gen)[:batch]
        a = torch.randn(batch, dim + extra, generator=gen)
        out.append((a, a + 0.3 * torch.randn(batch, dim + extra, generator=gen), idx))
    return out


def run_steps(strategy, data, start: int = 0) -> list[torch.Tensor]:
    """Train free embeddings' stand-ins: here the strategy alone, with its own params under plain SGD."""
    opt = torch.optim.SGD(strategy.parameters(), lr=0.05) if list(strategy.parameters()) else None
    losses = []
    for t, (a, b, idx) in enumerate(data, start=start):
        step = Clock(step=t, epoch=t // 5, epochs=4, steps_per_epoch=5)
        out = strategy(a, b, idx, step)
        if opt is not None:
            opt.zero_grad()
            out.loss.backward()
            opt.step()
        strategy.update(out, idx, step)
        losses.append(out.loss.detach())
    return losses


@pytest.mark.parametrize(("name", "pairing"), PAIRS, ids=IDS)
def test_finite_loss_and_temperatures_within_bounds(name: str, pairing: str) -> None:
    s = create(name, pairing)
    lo, hi = s.tau_bounds()
    for t, (a, b, idx) in enumerate(batches(6, extra=s.extra_outputs)):
        step = Clock(step=t, epoch=t // 2, epochs=3, steps_per_epoch=2)
        out = s(a, b, idx, step)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        assert out.tau.shape == tau_shape(pairing, 8)
        assert torch.all((out.tau >= lo - 1e-6) & (out.tau <= hi + 1e-6))
        assert all(v.ndim == 0 for v in out.logs.values())
        assert all(not v.requires_grad for v in [*out.saved.values(), out.tau])
        s.update(out, idx, step)
        temps = s.temperatures()
        assert temps.shape == tau_shape(pairing, N) and torch.all((temps >= lo - 1e-6) & (temps <= hi + 1e-6))


@pytest.mark.parametrize(("name", "pairing"), PAIRS, ids=IDS)
def test_declarations_match_what_the_strategy_does(name: str, pairing: str) -> None:
    """Capabilities are declared, and the declarations hold: learnable <-> trainable parameters and a param group;
    per-sample τ -> per-sample state; resolved hyperparameters rebuild the same config; the class serves the
    pairing it is registered for."""
    cls = get_strategy_class(name, pairing)
    s = create(name, pairing)
    assert cls.name == name and cls.pairing == pairing and pairing in PAIRINGS
    assert isinstance(cls.extra_outputs, int) and cls.extra_outputs >= 0
    assert cls.learnable == bool(list(s.parameters())) == (s.param_group() is not None)
    assert not cls.per_sample_tau or cls.per_sample_state
    assert set(cls.tau_hyperparameters) <= set(cls.hyperparameter_names())
    resolved = cls.resolve_hyperparameters()
    assert create(name, pairing, **resolved).config == s.config
    assert isinstance(cls.search_grid(epochs=10), dict)


@pytest.mark.parametrize(("name", "pairing"), PAIRS, ids=IDS)
def test_forward_never_mutates_state(name: str, pairing: str) -> None:
    s = create(name, pairing)
    a, b, idx = batches(1, extra=s.extra_outputs)[0]
    before = {k: v.clone() for k, v in s.state_dict().items()}
    s(a, b, idx, Clock())
    assert all(torch.equal(v, before[k]) for k, v in s.state_dict().items())


@pytest.mark.parametrize(("name", "pairing"), PAIRS, ids=IDS)
def test_loss_falls_when_free_embeddings_are_optimised(name: str, pairing: str) -> None:
    gen = torch.Generator().manual_seed(1)
    s = create(name, pairing, num_samples=16)
    n, dim = 16, 8 + s.extra_outputs
    emb1 = torch.randn(n, dim, generator=gen).requires_grad_()
    emb2 = torch.randn(n, dim, generator=gen).requires_grad_()
    opt = torch.optim.SGD([emb1, emb2, *s.parameters()], lr=0.5)
    idx = torch.arange(n)
    losses = []
    for t in range(50):
        step = Clock(step=t, epochs=50, steps_per_epoch=1)
        out = s(emb1, emb2, idx, step)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        s.update(out, idx, step)
        losses.append(float(out.loss.detach()))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1e-3


@pytest.mark.parametrize(("name", "pairing"), PAIRS, ids=IDS)
def test_state_dict_round_trip_resumes_bit_identically(name: str, pairing: str) -> None:
    uninterrupted = create(name, pairing)
    data = batches(10, seed=2, extra=uninterrupted.extra_outputs)
    losses = run_steps(uninterrupted, data)

    first = create(name, pairing)
    run_steps(first, data[:5])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = create(name, pairing)
    resumed.load_state_dict(torch.load(buffer))
    resumed_losses = run_steps(resumed, data[5:], start=5)

    assert all(torch.equal(x, y) for x, y in zip(losses[5:], resumed_losses))
    for (k, v), (k2, v2) in zip(uninterrupted.state_dict().items(), resumed.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


@pytest.mark.parametrize(("name", "pairing"), PAIRS, ids=IDS)
def test_to_moves_all_state(name: str, pairing: str) -> None:
    s = create(name, pairing).to(torch.float64)
    assert all(t.dtype == torch.float64 for t in [*s.buffers(), *s.parameters()] if t.is_floating_point())
    a, b, idx = batches(1, extra=s.extra_outputs)[0]
    out = s(a.double(), b.double(), idx, Clock())
    assert out.loss.dtype == torch.float64
    if torch.cuda.is_available():
        s = s.to("cuda")
        assert all(t.device.type == "cuda" for t in [*s.buffers(), *s.parameters()])
        out = s(a.cuda(), b.cuda(), idx.cuda(), Clock())
        s.update(out, idx.cuda(), Clock())
        assert s.temperatures().device.type == "cuda"


@pytest.mark.parametrize(("name", "pairing"), PAIRS, ids=IDS)
def test_finite_under_bf16_autocast_at_tau_0_005(name: str, pairing: str) -> None:
    s = create(name, pairing, **get_strategy_class(name, pairing).pinned_tau_hyperparameters(0.005))
    assert s.tau_bounds()[0] == pytest.approx(0.005)
    linear = torch.nn.Linear(16, 16 + s.extra_outputs)
    for t, (a, b, idx) in enumerate(batches(3, seed=3)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fa, fb = linear(a), linear(b)  # bf16 features, as an autocast encoder gives
            assert fa.dtype == torch.bfloat16
            out = s(fa, fb, idx, Clock(step=t))
        assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
        out.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in linear.parameters())
        linear.zero_grad()
        s.update(out, idx, Clock(step=t))
        assert torch.isfinite(s.temperatures()).all()


class EdgeTrial:
    """An Optuna-like trial that always suggests one end of each range."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return high if self.high else low

    def suggest_int(self, name: str, low: int, high: int, log: bool = False) -> int:
        return high if self.high else low

    def suggest_categorical(self, name: str, choices: list) -> object:
        return choices[-1] if self.high else choices[0]


@pytest.mark.parametrize(("name", "pairing"), PAIRS, ids=IDS)
def test_search_space_and_grid_build_valid_strategies(name: str, pairing: str) -> None:
    cls = get_strategy_class(name, pairing)
    for high in (False, True):
        create(name, pairing, **cls.search_space(EdgeTrial(high), epochs=10))
    for key, values in cls.search_grid(epochs=10).items():
        for value in values:
            create(name, pairing, **{key: value})
