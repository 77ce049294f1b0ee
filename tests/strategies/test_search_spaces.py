"""Search spaces that contain the answers (issue 26): every registered strategy's space holds its defaults' and its
presets' value of each hyperparameter it searches; a ρ bounded by log(B − 1) is searched up to just below it at the
run's global batch; and `fixed` can reach a smaller τ than any per-sample strategy of its pairing may use.

The spaces are read as the studies read them, through `samplers.search_distributions`."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any

import optuna
import pytest

from tempbench.strategies import create_strategy, get_strategy_class, list_strategies
from tempbench.study.samplers import search_distributions

PAIRINGS = ("views", "image_text")
PAIRS = [(name, pairing) for pairing in PAIRINGS for name in list_strategies(pairing=pairing)]
IDS = [f"{name}-{pairing}" for name, pairing in PAIRS]
EPOCHS = 10

# Searched parameters that are not Config fields, at the defaults (strategies/README.md): cosine's period is a fifth
# of the run; step's default milestones start at τ 0.5 and end at 0.1.
DERIVED_DEFAULTS = {("cosine", "views"): {"period_fraction": 0.2},
                    ("step", "views"): {"tau_first": 0.5, "tau_last": 0.1}}
# Presets written for another global batch than the assumed 512: their ρ is checked in the space of that batch.
PRESET_BATCH = {("tempnet", "image_text", "authors"): 2048}  # TempNet's script: 8 GPUs × 256, gathered
# The strategies whose ρ must stay below log(B − 1) (README.md, `isogclr` (image_text) and `tempnet`).
RHO_BELOW_LOG_BATCH = [("isogclr", "image_text"), ("tempnet", "image_text")]


def distributions(name: str, pairing: str, batch_size: int | None = None) -> dict[str, Any]:
    return search_distributions(get_strategy_class(name, pairing).search_space, EPOCHS, batch_size=batch_size)


def holds(distribution: Any, value: Any) -> bool:
    """Whether `value` is one a trial could draw from `distribution` (range ends included)."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    return value is not None and distribution.low <= value <= distribution.high


def configs(name: str, pairing: str) -> dict[str, tuple[dict[str, Any], int | None]]:
    """label -> (the config's values in the space's coordinates, the batch its ρ was written for)."""
    cls = get_strategy_class(name, pairing)
    derived = DERIVED_DEFAULTS.get((name, pairing), {})
    out = {"defaults": ({**dataclasses.asdict(cls.Config()), **derived}, None)}
    for preset, config in cls.presets.items():
        out[f"preset {preset}"] = ({**dataclasses.asdict(config), **derived}, PRESET_BATCH.get((name, pairing, preset)))
    return out


@pytest.mark.parametrize(("name", "pairing"), PAIRS, ids=IDS)
def test_the_space_holds_the_defaults_and_every_preset(name: str, pairing: str) -> None:
    for label, (values, batch) in configs(name, pairing).items():
        space = distributions(name, pairing, batch)
        unknown = sorted(set(space) - set(values))
        assert not unknown, f"{name} ({pairing}) searches {unknown}: add their default values to DERIVED_DEFAULTS"
        outside = {key: values[key] for key, d in space.items() if not holds(d, values[key])}
        assert not outside, f"{name} ({pairing}) {label}: {outside} outside its search space {space}"


@pytest.mark.parametrize(("name", "pairing"), RHO_BELOW_LOG_BATCH, ids=[n for n, _ in RHO_BELOW_LOG_BATCH])
def test_rho_is_searched_up_to_just_below_log_batch(name: str, pairing: str) -> None:
    top = {batch: distributions(name, pairing, batch)["rho"].high for batch in (None, 128, 512, 2048)}
    assert top[None] == top[512]  # an unknown batch is taken as 512
    for batch in (128, 512, 2048):
        assert math.log(batch - 1) - 0.25 < top[batch] < math.log(batch - 1)
    assert top[512] >= 6.0  # the iSogCLR authors' ρ at their gathered batch of 512 (log 511 = 6.24)
    assert top[128] < math.log(127) < top[512]  # B = 128: below 4.84, where the authors' 6.0 pins every τ
    small = distributions(name, pairing, 4)["rho"]  # log 3 = 1.10: the range still starts below its end
    assert 0.0 < small.low < small.high < math.log(3)


def test_a_space_function_that_binds_the_batch_keeps_it() -> None:
    space_fn = functools.partial(get_strategy_class("isogclr", "image_text").search_space, batch_size=128)
    assert search_distributions(space_fn, EPOCHS)["rho"].high < math.log(127)


def smallest_tau(name: str, pairing: str) -> float:
    """The smallest τ the strategy may use anywhere in its space (every corner of it) or at its defaults and presets:
    the lower end of `tau_bounds()` of each such configuration."""
    cls = get_strategy_class(name, pairing)
    space = distributions(name, pairing)
    corners = [dict(zip(space, ends, strict=True))
               for ends in itertools.product(*[(d.low, d.high) for d in space.values()])]
    trials = [cls.search_space(optuna.trial.FixedTrial(corner), epochs=EPOCHS) for corner in corners]
    built = [*trials, {}, *({"preset": preset} for preset in cls.presets)]
    return min(create_strategy(name, 4, pairing=pairing, **hp).tau_bounds()[0] for hp in built)


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_fixed_reaches_below_every_per_sample_strategy(pairing: str) -> None:
    per_sample = [name for name in list_strategies(pairing=pairing) if get_strategy_class(name, pairing).per_sample_tau]
    assert len(per_sample) >= 4
    lowest = distributions("fixed", pairing)["tau"].low
    above = {name: smallest_tau(name, pairing) for name in per_sample}
    assert all(lowest < tau for tau in above.values()), f"fixed ({pairing}) starts at {lowest}; per-sample: {above}"


def test_isogclr_image_text_searches_its_tau_bounds_between_the_references() -> None:
    space = distributions("isogclr", "image_text")
    # the iSogCLR authors and LibAUC: τ_min 0.005; FastCLIP-v2 0.01; τ_max 0.05 (LibAUC), 0.07 (its example), 1.0
    assert all(holds(space["tau_min"], v) for v in (0.005, 0.01))
    assert all(holds(space["tau_max"], v) for v in (0.05, 0.07, 1.0))
    assert space["tau_min"].high <= space["tau_init"].low and space["tau_init"].high <= space["tau_max"].low
