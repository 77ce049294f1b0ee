"""Bad input gets one clear error, naming the parameter and its range, or the valid choices."""

from __future__ import annotations

import pytest
import torch

from tempbench.strategies import Step, create_strategy, list_strategies, register_strategy
from tempbench.strategies.fixed import Fixed


def test_unknown_strategy_lists_registered_names() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'simclr'") as err:
        create_strategy("simclr", num_samples=10)
    for name in list_strategies():
        assert name in str(err.value)


def test_unknown_hyperparameter_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['temperature'\].*valid: \['tau'\]"):
        create_strategy("fixed", num_samples=10, temperature=0.1)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        create_strategy("isogclr", num_samples=10, preset="libauc", lr=0.1)


@pytest.mark.parametrize(
    ("name", "hp", "message"),
    [
        ("fixed", {"tau": 0.0}, r"tau must be in \(0, inf\)"),
        ("fixed", {"tau": -1.0}, r"tau must be in \(0, inf\)"),
        ("sogclr", {"tau": 0.0}, r"tau must be in \(0"),
        ("learnable", {"tau_min": 0.5, "tau_max": 0.1}, r"tau_max must be in \[0.5, inf\)"),
        ("learnable", {"tau_init": 2.0}, r"tau_init must be in \[0.01, 1\]"),
        ("cosine", {"tau_min": 0.9, "tau_max": 0.5}, r"tau_max must be in \[0.9, inf\)"),
        ("isogclr", {"tau_min": 0.5, "tau_max": 0.1}, r"tau_max must be in \[0.5, inf\)"),
        ("isogclr", {"gamma": 0.0}, r"gamma must be in \(0, 1\]"),
        ("isogclr", {"gamma": 1.5}, r"gamma must be in \(0, 1\]"),
        ("sogclr", {"gamma": 0.0}, r"gamma must be in \(0, 1\]"),
        ("isogclr", {"rho": -0.1}, r"rho must be in \[0, inf\)"),
        ("isogclr", {"eta": -0.1}, r"eta must be in \[0, inf\)"),
        ("isogclr", {"beta": 0.0}, r"beta must be in \(0, 1\]"),
        ("isogclr", {"beta": 1.1}, r"beta must be in \(0, 1\]"),
        ("isogclr", {"grad_clip": 0.0}, r"grad_clip must be in \(0, inf\)"),
        ("step", {"milestones": [[2, 0.1], [1, 0.2]]}, "strictly ascending"),
        ("step", {"milestones": [[0, -0.1]]}, r"milestones tau must be in \(0"),
    ],
)
def test_out_of_range_hyperparameters_name_the_range(name: str, hp: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_strategy(name, num_samples=10, **hp)


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(ValueError, match=r"unknown preset 'paper'.*\['authors', 'libauc'\]"):
        create_strategy("isogclr", num_samples=10, preset="paper")


def test_presets_and_overrides() -> None:
    s = create_strategy("isogclr", num_samples=10, preset="libauc", rho=0.5)
    assert (s.config.tau_max, s.config.rho, s.config.grad_clip, s.config.beta) == (0.7, 0.5, None, 0.9)
    d = create_strategy("isogclr", num_samples=10).config
    assert (d.tau_init, d.tau_min, d.tau_max, d.rho, d.eta, d.beta, d.gamma, d.grad_clip) == \
        (0.1, 0.05, 1.0, 0.4, 0.03, 0.5, 0.8, 3.0)


@pytest.mark.parametrize("name", ["fixed", "isogclr"])
def test_bad_batches_raise(name: str) -> None:
    s = create_strategy(name, num_samples=10)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    with pytest.raises(ValueError, match="duplicate"):
        s(a, b, torch.tensor([0, 1, 1, 2]), Step())
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 10\)"):
        s(a, b, torch.tensor([0, 1, 2, 10]), Step())
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 10\)"):
        s(a, b, torch.tensor([-1, 1, 2, 3]), Step())
    with pytest.raises(ValueError, match=r"a and b must both be \(B, d\)"):
        s(a, torch.randn(4, 7), torch.arange(4), Step())
    with pytest.raises(ValueError, match="idx must be an integer tensor of shape"):
        s(a, b, torch.arange(3), Step())
    with pytest.raises(ValueError, match="idx must be an integer tensor"):
        s(a, b, torch.arange(4.0), Step())
    with pytest.raises(ValueError, match="at least 2 samples"):
        s(a[:1], b[:1], torch.arange(1), Step())


def test_bad_num_samples_and_step() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        create_strategy("fixed", num_samples=0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        Step(step=0, epochs=1, steps_per_epoch=0)


def test_registering_a_taken_name_or_a_non_strategy_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("fixed")(type("Other", (Fixed,), {}))
    with pytest.raises(TypeError, match="Strategy subclass"):
        register_strategy("nope")(dict)  # type: ignore[arg-type]
