"""The slim contract: a strategy that writes only a Config, `compute` and declarations gets the rest derived —
presets, search space and grid, temperatures, τ bounds and the learnable param group — and bad declarations are
refused when it registers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from tempbench.strategies import (
    Clock,
    StepOut,
    Strategy,
    check_range,
    frozen,
    list_strategies,
    log_uniform,
    register_strategy,
    uniform,
)
from tempbench.strategies.losses import nt_xent


@dataclass(frozen=True)
class ToyConfig:
    tau: float = 0.2
    tau_max: float = 0.5
    weight: float = 1.0
    tau_lr: float = 0.03

    def __post_init__(self) -> None:
        check_range("tau", self.tau, 0.0, None, low_open=True)
        check_range("tau_max", self.tau_max, self.tau, None)


class Toy(Strategy):
    """Per-sample τ in the buffer `tau`; nothing but a Config, `compute` and declarations."""

    Config = ToyConfig
    per_sample_state = True
    per_sample_tau = True
    tau_hyperparameters = ("tau", "tau_max")
    presets = frozen(plain=ToyConfig(), heavy=ToyConfig(weight=3.0))
    space = frozen(weight=uniform(0.5, 2.0), tau=log_uniform(0.05, 0.5))
    grid = frozen(tau=(0.1, 0.2))

    def __init__(self, num_samples: int, config: ToyConfig) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("tau", torch.full((num_samples,), config.tau))

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        tau = self.tau[idx].to(z1.dtype)
        return StepOut(loss=self.config.weight * nt_xent(z1, z2, tau.repeat(2)[:, None]), tau=tau)


class RecordingTrial:
    """Records each `suggest_float` call and answers the low end."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        self.calls.append((name, low, high, log))
        return low


def test_presets_become_the_preset_keyword() -> None:
    assert Toy.build_options == ("preset",) and Toy.accepted_hyperparameters()[-1] == "preset"
    assert Toy.resolve_hyperparameters(preset="heavy", tau=0.1)["weight"] == 3.0
    assert Toy.resolve_hyperparameters()["weight"] == 1.0  # no preset: the Config's defaults
    with pytest.raises(ValueError, match=r"unknown preset 'light' for strategy ''; valid: \['heavy', 'plain'\]"):
        Toy.create(4, preset="light")
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['weigth'\].*did you mean 'weight'"):
        Toy.create(4, preset="heavy", weigth=2.0)


def test_space_and_grid_are_read_from_the_declarations_in_order() -> None:
    trial = RecordingTrial()
    assert Toy.search_space(trial, epochs=3) == {"weight": 0.5, "tau": 0.05}
    assert trial.calls == [("weight", 0.5, 2.0, False), ("tau", 0.05, 0.5, True)]
    grid = Toy.search_grid()
    assert grid == {"tau": [0.1, 0.2]}
    grid["tau"].append(9.0)  # a copy: the declaration is untouched
    assert Toy.search_grid() == {"tau": [0.1, 0.2]}
    with pytest.raises(TypeError):
        Toy.grid["tau"] = (1.0,)  # type: ignore[index]


def test_temperatures_bounds_and_ranges_are_derived() -> None:
    s = Toy.create(6, tau=0.1, tau_max=0.4)
    assert s.tau_bounds() == (0.1, 0.4)
    temps = s.temperatures()
    assert torch.equal(temps, s.tau) and temps.data_ptr() != s.tau.data_ptr()
    assert s.param_group() is None
    assert Toy.hyperparameter_ranges() == {"tau": "(0, inf)", "tau_max": "[0.2, inf)"}
    out = s(torch.randn(4, 8), torch.randn(4, 8), torch.arange(4), Clock())
    assert out.loss.ndim == 0 and torch.equal(out.tau, s.tau[:4])


def test_a_learnable_strategy_gets_its_param_group_from_tau_lr() -> None:
    class LearnableToy(Toy):
        learnable = True

        def __init__(self, num_samples: int, config: ToyConfig) -> None:
            super().__init__(num_samples, config)
            self.theta = nn.Parameter(torch.zeros(()))

    assert LearnableToy.create(4).param_group() == {"lr": 0.03, "weight_decay": 0.0}

    @dataclass(frozen=True)
    class NoRateConfig:
        tau: float = 0.2
        tau_max: float = 0.5

    with pytest.raises(ValueError, match="needs a Config field `tau_lr`"):
        type("NoRate", (LearnableToy,), {"Config": NoRateConfig}).create(4).param_group()


@pytest.mark.parametrize(("attrs", "message"), [
    ({"space": frozen(tau=uniform(0.1, 0.2), rate=uniform(0.0, 1.0))}, r"declares space \['rate'\]"),
    ({"grid": frozen(taus=(0.1,))}, r"declares grid \['taus'\]"),
    ({"presets": frozen(bad={"tau": 0.1})}, r"presets \['bad'\] that are not ToyConfig instances"),
])
def test_bad_declarations_are_refused_at_registration(attrs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        register_strategy("toy_bad")(type("Bad", (Toy,), attrs))
    assert "toy_bad" not in list_strategies()
