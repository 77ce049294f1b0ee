"""Bad input gets one clear error, naming the parameter and its range, or the valid choices."""

from __future__ import annotations

import pytest
import torch

from tempbench.strategies import (
    Clock,
    create_strategy,
    get_strategy_class,
    list_strategies,
    register_strategy,
    registry,
    reserve_hyperparameter_names,
    strategy_pairings,
)
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
        s(a, b, torch.tensor([0, 1, 1, 2]), Clock())
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 10\)"):
        s(a, b, torch.tensor([0, 1, 2, 10]), Clock())
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 10\)"):
        s(a, b, torch.tensor([-1, 1, 2, 3]), Clock())
    with pytest.raises(ValueError, match=r"a and b must both be \(B, d\)"):
        s(a, torch.randn(4, 7), torch.arange(4), Clock())
    with pytest.raises(ValueError, match="idx must be an integer tensor of shape"):
        s(a, b, torch.arange(3), Clock())
    with pytest.raises(ValueError, match="idx must be an integer tensor"):
        s(a, b, torch.arange(4.0), Clock())
    with pytest.raises(ValueError, match="at least 2 samples"):
        s(a[:1], b[:1], torch.arange(1), Clock())


def test_bad_num_samples_and_step() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        create_strategy("fixed", num_samples=0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        Clock(step=0, epochs=1, steps_per_epoch=0)


def test_registering_a_taken_name_or_a_non_strategy_fails() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("fixed")(type("Other", (Fixed,), {}))
    with pytest.raises(TypeError, match="Strategy subclass"):
        register_strategy("nope")(dict)  # type: ignore[arg-type]


def test_a_hyperparameter_named_like_a_run_setting_is_refused_at_registration() -> None:
    from dataclasses import dataclass

    import tempbench.config  # noqa: F401  (reserves the run-setting names)
    from tempbench.strategies import GlobalTauStrategy

    @dataclass(frozen=True)
    class ClashConfig:
        lr: float = 0.1

    class Clash(GlobalTauStrategy):
        Config = ClashConfig

    with pytest.raises(ValueError, match="named like 'lr' \\(a run setting\\)"):
        register_strategy("clash")(Clash)
    assert "clash" not in list_strategies()


def test_unknown_strategy_gets_a_did_you_mean_hint() -> None:
    with pytest.raises(ValueError, match=r"unknown strategy 'isoglcr' \(did you mean 'isogclr'\?\); registered"):
        create_strategy("isoglcr", num_samples=10)
    with pytest.raises(ValueError, match=r"unknown strategy 'zzz'; registered"):
        strategy_pairings("zzz")


def test_a_known_strategy_without_the_pairing_names_its_pairings() -> None:
    with pytest.raises(ValueError, match=r"strategy 'cosine' supports pairings \['views'\], not 'image_text'"):
        create_strategy("cosine", num_samples=10, pairing="image_text")
    with pytest.raises(ValueError, match=r"strategy 'rgclg' supports pairings \['image_text'\], not 'views'"):
        get_strategy_class("rgclg")
    with pytest.raises(ValueError, match=r"unknown pairing 'text'; valid: views, image_text"):
        get_strategy_class("fixed", "text")
    with pytest.raises(ValueError, match="unknown pairing"):
        list_strategies(pairing="pairs")


def test_listing_by_pairing() -> None:
    assert "rgclg" in list_strategies() and "rgclg" not in list_strategies(pairing="views")
    assert "cosine" not in list_strategies(pairing="image_text")
    assert set(list_strategies(pairing="image_text")) >= {"fixed", "learnable", "sogclr", "isogclr", "rgclg", "macl",
                                                          "tau_uncertainty"}
    assert list_strategies("iso*", pairing="image_text") == ["isogclr"]
    assert strategy_pairings("isogclr") == ["views", "image_text"] and strategy_pairings("step") == ["views"]
    assert get_strategy_class("isogclr", "image_text") is not get_strategy_class("isogclr")


def test_registry_is_keyed_by_name_and_pairing() -> None:
    from tempbench.strategies.fixed import FixedImageText

    with pytest.raises(ValueError, match=r"'fixed' \(image_text\) is already registered"):
        register_strategy("fixed", pairing="image_text")(type("Other", (FixedImageText,), {}))
    with pytest.raises(ValueError, match="already registered under another name or pairing"):
        register_strategy("fixed_again", pairing="image_text")(FixedImageText)
    with pytest.raises(ValueError, match="unknown pairing 'audio'"):
        register_strategy("fixed_audio", pairing="audio")
    cls = register_strategy("fixed_test_only", pairing="image_text")(type("Mine", (FixedImageText,), {}))
    try:
        assert (cls.name, cls.pairing) == ("fixed_test_only", "image_text")
        assert strategy_pairings("fixed_test_only") == ["image_text"]
    finally:
        registry._REGISTRY.pop("fixed_test_only")


def test_declared_capabilities_are_checked_at_registration_for_every_pairing() -> None:
    from tempbench.strategies.fixed import FixedImageText

    for attrs, message in [({"extra_outputs": -1}, "extra_outputs"), ({"per_sample_tau": True}, "per_sample_state"),
                           ({"tau_hyperparameters": ("tau", "tau_x")}, "tau_hyperparameters")]:
        with pytest.raises(ValueError, match=message):
            register_strategy("bad_declaration", pairing="image_text")(type("Bad", (FixedImageText,), attrs))
    assert "bad_declaration" not in list_strategies()


def test_reserved_names_apply_to_image_text_strategies() -> None:
    from dataclasses import dataclass

    from tempbench.strategies.fixed import FixedImageText

    @dataclass(frozen=True)
    class PairingConfig:
        pairing: str = "x"

    with pytest.raises(ValueError, match="named like 'pairing'"):
        register_strategy("clash_pairs", pairing="image_text")(type("Clash", (FixedImageText,), {
            "Config": PairingConfig, "tau_hyperparameters": ()}))
    try:  # reserving a name an image_text-only strategy uses is refused at once
        with pytest.raises(ValueError, match=r"strategy 'rgclg' has hyperparameter\(s\) named like 'tau_lr_ratio'"):
            reserve_hyperparameter_names(["tau_lr_ratio"], owner="a test")
    finally:
        registry._RESERVED.pop("tau_lr_ratio", None)


@pytest.mark.parametrize(
    ("name", "hp", "message"),
    [
        ("isogclr", {"rho": -1.0}, r"rho must be in \[0, inf\)"),
        ("isogclr", {"gamma_schedule": "linear"}, "gamma_schedule must be one of 'constant', 'cosine'"),
        ("isogclr", {"first_visit": "epoch"}, "first_visit must be one of"),
        ("isogclr", {"gamma_decay_epochs": 0.0}, r"gamma_decay_epochs must be in \(0, inf\)"),
        ("sogclr", {"tau": 0.0}, r"tau must be in \(0"),
        ("rgclg", {"tau_lr_ratio": 0.0}, r"tau_lr_ratio must be in \(0, inf\)"),
        ("rgclg", {"adam_beta2": 1.0}, r"adam_beta2 must be in \[0, 1\)"),
        ("rgclg", {"tau_init": 0.005}, r"tau_init must be in \[0.01, 1\]"),
        ("macl", {"alpha": 1.2}, r"alpha must be in \[0, 1\]"),
        ("macl", {"alpha": 1.0}, r"must be > 0 \(τ at alignment A = −1\), got 0"),
        ("macl", {"alpha": 0.8, "a_0": 0.5}, "use alpha·\\(1 \\+ a_0\\) < 1"),
        ("tau_uncertainty", {"eps": 0.0}, r"eps must be in \(0, inf\)"),
    ],
)
def test_out_of_range_image_text_hyperparameters_name_the_range(name: str, hp: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_strategy(name, num_samples=10, pairing="image_text", **hp)


def test_views_only_options_and_presets() -> None:
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['positive_kappa'\]"):
        create_strategy("tau_uncertainty", num_samples=10, pairing="image_text", positive_kappa="view1")
    with pytest.raises(ValueError, match="positive_kappa must be one of 'anchor', 'view1'"):
        create_strategy("tau_uncertainty", num_samples=10, positive_kappa="view2")
    with pytest.raises(ValueError, match=r"unknown preset 'paper'.*\['authors', 'default', 'libauc'\]"):
        create_strategy("isogclr", num_samples=10, pairing="image_text", preset="paper")
    lib = create_strategy("isogclr", num_samples=10, pairing="image_text", preset="libauc").config
    assert (lib.tau_init, lib.tau_min, lib.tau_max, lib.rho, lib.eta, lib.gamma, lib.grad_clip, lib.first_visit) == \
        (0.01, 0.005, 0.05, 6.0, 0.01, 0.9, None, "batch")


def test_extra_outputs_need_a_wider_input() -> None:
    s = create_strategy("tau_uncertainty", num_samples=10, pairing="image_text")
    with pytest.raises(ValueError, match=r"needs d \+ 1 columns \(extra_outputs = 1\) with d >= 1; got 1"):
        s(torch.randn(4, 1), torch.randn(4, 1), torch.arange(4), Clock())


@pytest.mark.parametrize("name", ["fixed", "isogclr", "rgclg", "macl"])
def test_bad_image_text_batches_raise(name: str) -> None:
    s = create_strategy(name, num_samples=10, pairing="image_text")
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    with pytest.raises(ValueError, match="duplicate"):
        s(a, b, torch.tensor([0, 1, 1, 2]), Clock())
    with pytest.raises(ValueError, match=r"a and b must both be \(B, d\) \(image_text\)"):
        s(a, torch.randn(3, 8), torch.arange(4), Clock())
    with pytest.raises(ValueError, match="at least 2 samples"):
        s(a[:1], b[:1], torch.arange(1), Clock())
