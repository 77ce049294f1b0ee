"""Configuration is resolved once: strict names and types, strategy hyperparameters with their defaults, the
card's long-tail factor and image size, one hash per experiment, one rule for flags against --set."""

from __future__ import annotations

import pytest

from tempbench.config import RunConfig, merge_flags, resolve_run_config, run_setting_names, split_assignments
from tempbench.strategies import get_strategy_class


def test_resolution_fills_defaults_and_the_card() -> None:
    config = resolve_run_config("isogclr", "cifar10-lt")
    assert config.long_tail == 0.01 and config.image_size == 32 and config.subset_seed == 0
    assert config.hyperparameters["rho"] == 0.4 and config.hyperparameters["first_visit"] == "sample"
    libauc = resolve_run_config("isogclr", "digits", hyperparameters={"preset": "libauc"})
    assert libauc.hyperparameters["tau_max"] == 0.7 and "preset" not in libauc.hyperparameters


def test_one_configuration_has_one_hash_however_it_is_spelled() -> None:
    implicit = resolve_run_config("isogclr", "cifar10-lt", settings={"seed": 1})
    explicit = resolve_run_config("isogclr", "cifar10-lt", settings={"long_tail": 0.01, "image_size": 32, "seed": 2},
                                  hyperparameters={"rho": 0.4, "tau_init": 0.1})
    assert implicit.hash() == explicit.hash()  # seeds share a hash; defaults spelled out change nothing
    assert implicit.hash() != resolve_run_config("isogclr", "cifar10-lt", hyperparameters={"rho": 0.5}).hash()
    assert implicit.hash() == resolve_run_config("isogclr", "cifar10-lt", settings={"device": "cpu"}).hash()


def test_strict_names_types_and_finite_numbers() -> None:
    with pytest.raises(ValueError, match="unknown run setting 'epoch' \\(did you mean 'epochs'\\?\\)"):
        resolve_run_config("fixed", "digits", settings={"epoch": 3})
    with pytest.raises(ValueError, match="epochs must be int"):
        RunConfig(epochs="3")
    with pytest.raises(ValueError, match="lr must be a finite number"):
        RunConfig(lr=float("inf"))
    with pytest.raises(ValueError, match="long_tail"):
        RunConfig(long_tail=0.0)
    with pytest.raises(ValueError, match="monitor_every needs a validation slice"):
        RunConfig(monitor_every=1)


def test_set_routes_each_key_to_its_one_owner() -> None:
    settings, hyperparameters = split_assignments(["lr=0.5", "rho=0.2", "preset=libauc"], get_strategy_class("isogclr"))
    assert settings == {"lr": 0.5} and hyperparameters == {"rho": 0.2, "preset": "libauc"}
    with pytest.raises(ValueError, match=r"Run settings: .*lr.*isogclr hyperparameters: .*rho"):
        split_assignments(["rhoo=0.2"], get_strategy_class("isogclr"))


def test_flags_that_disagree_with_set_are_an_error() -> None:
    assert merge_flags({"epochs": 5}, {"epochs": 5, "device": None}) == {"epochs": 5}
    with pytest.raises(ValueError, match="--epochs 3 and --set epochs=5 disagree"):
        merge_flags({"epochs": 5}, {"epochs": 3})


def test_run_settings_exclude_the_strategy_channels() -> None:
    assert "hyperparameters" not in run_setting_names() and "strategy" not in run_setting_names()
    assert {"epochs", "lr", "val_fraction", "subset_seed"} <= set(run_setting_names())


def test_everything_a_run_needs_is_resolved_once_into_the_config() -> None:
    config = resolve_run_config("isogclr", "digits-lt", hyperparameters={"rho": 0.3})
    assert config.card.name == "digits-lt" and config.pairing.name == "views"
    assert config.strategy_class is get_strategy_class("isogclr", "views")
    assert (config.long_tail, config.long_tail_profile, config.n_max, config.image_size) == (0.1, "exp", None, 8)
    assert config.hyperparameters["rho"] == 0.3 and "tau_init" in config.hyperparameters  # defaults filled in
    balanced = resolve_run_config("fixed", "digits")
    assert (balanced.long_tail, balanced.long_tail_profile, balanced.n_max) == (1.0, None, None)


def test_the_hash_covers_the_cards_long_tail_cut() -> None:
    base = resolve_run_config("fixed", "digits-lt")
    for change in ({"n_max": 100}, {"long_tail_profile": "step"}, {"long_tail": 0.2}):
        other = resolve_run_config("fixed", "digits-lt", settings=change)
        assert other.hash() != base.hash(), change
        assert other.to_dict()[next(iter(change))] == next(iter(change.values()))
    assert base.to_dict()["pairing"] == "views" and "card" not in base.to_dict()


def test_an_image_caption_dataset_resolves_the_image_text_pairing_and_refuses_a_cut(caption_folder) -> None:
    config = resolve_run_config("isogclr", caption_folder, settings={"text_tower": "random"})
    assert config.pairing.name == "image_text" and config.card is None
    assert config.strategy_class is get_strategy_class("isogclr", "image_text")
    assert config.hyperparameters["rho"] == 4.0  # the image_text class's defaults, not the views class's
    with pytest.raises(ValueError, match="n_max cut a labelled training split"):
        resolve_run_config("isogclr", caption_folder, settings={"text_tower": "random", "n_max": 5})
