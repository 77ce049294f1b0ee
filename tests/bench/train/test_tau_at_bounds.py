"""The "τ at its bounds" control: `tau_at_min`/`tau_at_max` (the share of a run's τ entries at each end of the
strategy's `tau_bounds()`), their `TauAtBoundWarning`, and the bounds every per-sample-τ strategy declares. Inputs
are built directly (a strategy, its real pairing, a stand-in for the training data); one 1-epoch digits run checks
the row and the history end to end."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tempbench.config import resolve_run_config
from tempbench.pairings import get_pairing
from tempbench.strategies import Clock, get_strategy_class, list_strategies, strategy_pairings
from tempbench.train import train
from tempbench.train.row import share_at, tau_at_bounds, tau_bound_fields
from tempbench.util import TauAtBoundWarning

PER_SAMPLE = [(name, pairing) for name in list_strategies() for pairing in strategy_pairings(name)
              if get_strategy_class(name, pairing).per_sample_tau]


def fake_setup(name: str, pairing: str, num_samples: int, images: int | None = None) -> SimpleNamespace:
    """What `tau_bound_fields` reads of a run: the strategy, the registered pairing, the training data's state
    index (image_text: per pair, or per image and caption with `images` image rows) and the strategy's name."""
    strategy = get_strategy_class(name, pairing).create(num_samples)
    train_data = SimpleNamespace(state_index="pair" if images is None else "image_caption",
                                 images=list(range(images or 0)))
    return SimpleNamespace(strategy=strategy, pairing=get_pairing(pairing), train=train_data,
                           config=SimpleNamespace(strategy=name))


def tau_state(setup: SimpleNamespace) -> torch.Tensor:
    """The buffer `temperatures()` reads, to be set in place."""
    return setup.strategy.get_buffer(setup.strategy.tau_buffer)


def test_every_per_sample_strategy_is_covered() -> None:
    assert {("isogclr", "views"), ("isogclr", "image_text"), ("tau_uncertainty", "views"), ("tempnet", "image_text"),
            ("dystress", "views"), ("tau_free", "image_text")} <= set(PER_SAMPLE)


@pytest.mark.parametrize(("name", "pairing"), PER_SAMPLE, ids=[f"{n}-{p}" for n, p in PER_SAMPLE])
def test_state_forced_to_a_bound_counts_every_entry_there(name: str, pairing: str) -> None:
    setup = fake_setup(name, pairing, num_samples=12)
    low, high = setup.strategy.tau_bounds()
    assert 0.0 < low <= high
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TauAtBoundWarning)
        tau_state(setup).fill_(low)  # float32 state: the bound rounded, within the tolerance
        assert tau_bound_fields(setup) == {"tau_at_min": 1.0, "tau_at_max": 1.0 if low == high else 0.0}
        if math.isfinite(high):
            tau_state(setup).fill_(high)
            assert tau_bound_fields(setup) == {"tau_at_min": 1.0 if low == high else 0.0, "tau_at_max": 1.0}


def _orthogonal(width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(4, width) a = e_0..e_3 and b = e_4..e_7: every similarity between the 8 rows is 0."""
    eye = torch.eye(width)
    return eye[:4], eye[4:8]


def _aligned(width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(4, width) a = b, every row the same: every similarity is 1."""
    a = torch.ones(4, width)
    return a, a.clone()


def _noisy(width: int, last: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(4, width) random a, b = a + noise; `last` overwrites the last column (an extra output such as TaU's r)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, width, generator=gen)
    b = a + 0.3 * torch.randn(4, width, generator=gen)
    if last is not None:
        a[:, -1] = b[:, -1] = last
    return a, b


def _tempnet_bias(value: float) -> Callable[[Any], None]:
    def prepare(strategy: Any) -> None:
        for net in strategy.networks.values():
            net.head_bias.data.fill_(value)  # σ(o) saturates: τ = τ_min + (τ_max − τ_min)·{0, 1}
    return prepare


# How each per-sample-τ strategy's own step reaches an end of its tau_bounds(): (hyperparameters, inputs of width w,
# a preparation of the strategy, the end reached). A new per-sample strategy adds its rows here.
DRIVES: dict[str, list[tuple[dict, Callable, Callable | None, str]]] = {
    "isogclr": [({"rho": 50.0, "eta": 10.0}, _noisy, None, "min")],  # G clipped > 0, one step jumps past τ_min
    "tau_uncertainty": [({}, lambda w: _noisy(w, last=50.0), None, "min")],  # σ(50) = 1: τ_eff = t
    "tau_free": [({}, _aligned, None, "min"), ({}, _orthogonal, None, "max")],  # s⁺ at the clamp; s⁺ = 0
    "dystress": [({}, _orthogonal, None, "min"), ({}, _aligned, None, "max")],  # τ(0) = τ_min, τ(±1) = τ_max
    "tempnet": [({}, _noisy, _tempnet_bias(-60.0), "min"), ({}, _noisy, _tempnet_bias(60.0), "max")],
}


def test_every_per_sample_strategy_has_a_drive_to_its_bounds() -> None:
    assert {name for name, _ in PER_SAMPLE} == set(DRIVES)


@pytest.mark.parametrize(("name", "pairing"), PER_SAMPLE, ids=[f"{n}-{p}" for n, p in PER_SAMPLE])
def test_the_strategy_s_own_step_reaches_the_bounds_it_declares(name: str, pairing: str) -> None:
    """Tight bounds: the τ the strategy's step writes at its extremes is the declared end within 1e-6 relative (the
    contract tests check that no τ leaves them), in the float32 the state keeps."""
    for hp, inputs, prepare, side in DRIVES[name]:
        s = get_strategy_class(name, pairing).create(4, **hp)
        if prepare is not None:
            prepare(s)
        a, b = inputs(8 + s.extra_outputs)
        idx = torch.arange(4)
        s.update(s(a, b, idx, Clock()), idx, Clock())
        assert tau_at_bounds(s, s.temperatures())[f"tau_at_{side}"] == 1.0, (side, s.temperatures(), s.tau_bounds())


def test_share_counts_entries_within_a_relative_1e_6() -> None:
    low = 0.005
    tau = torch.tensor([low, low * (1 + 9e-7), low * (1 - 9e-7), low * (1 + 2e-6)], dtype=torch.float64)
    assert share_at(tau, low) == 0.75  # the last is 2e-6 away, outside
    assert share_at(tau.float().view(2, 2), low) == 0.75  # any shape; float32 keeps the three within 1e-6
    assert share_at(tau, 1.0) == 0.0
    assert share_at(torch.tensor([math.inf, 1.0, 2.0, math.inf]), math.inf) == 0.5  # TaU's τ_max = ∞


def test_image_caption_state_counts_only_the_rows_a_batch_can_index() -> None:
    """6 pairs of 3 images: column 0 has 3 reachable rows (the images), column 1 all 6; 9 entries in all."""
    setup = fake_setup("isogclr", "image_text", num_samples=6, images=3)
    tau = tau_state(setup)
    tau.fill_(0.5)
    tau[:3, 0] = 0.005  # every image entry at τ_min (LibAUC preset's 0.005) ...
    tau[3:, 0] = 1.0  # ... rows past the images index nothing: not counted at τ_max
    tau[:2, 1] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TauAtBoundWarning)
        assert tau_bound_fields(setup) == {"tau_at_min": 3 / 9, "tau_at_max": 2 / 9}


def test_a_global_tau_strategy_has_no_shares() -> None:
    fixed = get_strategy_class("fixed", "views").create(8)
    fields = tau_at_bounds(fixed, fixed.temperatures())
    assert set(fields) == {"tau_at_min", "tau_at_max"} and all(math.isnan(v) for v in fields.values())


def test_warning_fires_above_one_half_at_either_bound_and_not_at_one_half() -> None:
    setup = fake_setup("isogclr", "views", num_samples=10)  # bounds [0.05, 1]
    tau = tau_state(setup)
    tau.fill_(0.2)
    tau[:6] = 0.05
    with pytest.warns(TauAtBoundWarning) as caught:
        assert tau_bound_fields(setup)["tau_at_min"] == 0.6
    assert [str(w.message) for w in caught] == [
        "isogclr: 60 % of its τ_i ended at τ_min = 0.05: it behaves like a global τ of 0.05; compare with fixed at "
        "τ = 0.05"]
    tau.fill_(0.2)
    tau[:7] = 1.0
    with pytest.warns(TauAtBoundWarning, match=r"^isogclr: 70 % of its τ_i ended at τ_max = 1: .* fixed at τ = 1$"):
        tau_bound_fields(setup)
    tau.fill_(0.2)
    tau[:5] = 0.05  # one half at τ_min, the rest inside: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", TauAtBoundWarning)
        assert tau_bound_fields(setup) == {"tau_at_min": 0.5, "tau_at_max": 0.0}


def test_a_run_whose_tau_runs_to_its_clamp_says_so_in_row_and_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """isogclr with ρ = 20 (G = ρ − KL >= 20 − log 510, clipped to 3) and η = 1: one visit moves τ_i from 0.1 by
    −η·β·3 = −1.5, to the clamp at τ_min = 0.05. One epoch of 2 batches of 256 visits 512 of digits-lt's 588
    images; the other 76 keep τ_init = 0.1. The evaluation (probes, τ report) is skipped: not the subject here."""
    monkeypatch.setattr(get_pairing("views"), "evaluate", lambda setup: ({}, None))
    config = resolve_run_config("isogclr", "digits-lt", hyperparameters={"rho": 20.0, "eta": 1.0},
                                settings={"encoder": "small_cnn", "projector_hidden": 32, "projector_out": 16,
                                          "batch_size": 256, "epochs": 1, "device": "cpu", "progress": False,
                                          "threads": 1})
    with pytest.warns(TauAtBoundWarning, match=r"^isogclr: 87 % of its τ_i ended at τ_min = 0.05: "):
        row = train(config)
    assert row["tau_at_min"] == pytest.approx(512 / 588, abs=1e-12) and row["tau_at_max"] == 0.0
    last = json.loads(row["history"])[-1]
    assert (last["tau_at_min"], last["tau_at_max"]) == (row["tau_at_min"], 0.0)
