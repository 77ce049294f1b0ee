"""What a strategy *declares*: its hyperparameters (a frozen `Config` dataclass), named presets of them, and the
ranges and grids a study searches. `StrategySpec` turns those declarations into the class-level API the harness
calls (`create`, `resolve_hyperparameters`, `search_space`, ...), so a strategy writes data here, not methods.

Nothing in this module touches tensors; `base.Strategy` inherits it.
"""

from __future__ import annotations

import contextvars
import dataclasses
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple, Self

from tempbench.util import check_type, did_you_mean

# While `hyperparameter_ranges` builds a default config, the checks below also record what they allow, so the ranges a
# listing shows are the ones validation enforces (not a second copy that could drift).
_RECORDED_RANGES: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("ranges", default=None)


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """Raise ValueError naming `name` and its allowed range if `value` lies outside it (None: unbounded on that
    side). Call it in a Config's `__post_init__`; `hyperparameter_ranges` reads the same call."""
    ok = True
    if low is not None:
        ok &= value > low if low_open else value >= low
    if high is not None:
        ok &= value < high if high_open else value <= high
    left = "(" if low_open else "["
    right = ")" if high_open or high is None else "]"
    interval = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
    _record(name, interval)
    if not ok:
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise ValueError naming `name` and the valid choices if `value` is not one of them."""
    _record(name, " | ".join(choices))
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}"
                         f"{did_you_mean(value, choices)}")


def check_types(config_class: type, hyperparameters: Mapping[str, Any]) -> None:
    """ValueError "rho must be float, got 'abc'" for a hyperparameter whose value does not have its Config field's
    declared type: the rule run settings follow (`util.check_type`), checked before the Config's own range checks,
    which would otherwise compare a string with a number and fail as a bug. Values pass on unchanged (an int stays
    an int where a float is declared), so resolved hyperparameters, and the hashes over them, stay what they were."""
    try:
        hints = typing.get_type_hints(config_class)
    except (NameError, TypeError):  # a plug-in's annotations that do not resolve: its own checks decide
        return
    for name, value in hyperparameters.items():
        if name in hints:
            check_type(name, value, hints[name])


def _record(name: str, allowed: str) -> None:
    recorded = _RECORDED_RANGES.get()
    if recorded is not None:
        recorded.setdefault(name, allowed)


class Range(NamedTuple):
    """One hyperparameter's interval in an Optuna search space: `trial.suggest_float(name, low, high, log=log)`."""

    low: float
    high: float
    log: bool = False


def uniform(low: float, high: float) -> Range:
    """A range sampled uniformly (for weights and radii such as γ, β, ρ)."""
    return Range(low, high)


def log_uniform(low: float, high: float) -> Range:
    """A range sampled uniformly in log space (for scales such as τ and learning rates)."""
    return Range(low, high, log=True)


def frozen(**items: Any) -> Mapping[str, Any]:
    """A read-only dict of `items`, in the order given: class-level declarations (`presets`, `space`, `grid`) are
    shared by every instance and subclass, so nothing may change them in place."""
    return MappingProxyType(items)


class StrategySpec:
    """The class-level half of a strategy: everything that is known before a tensor exists.

    A subclass declares (the mappings with `frozen`, e.g. `space = frozen(tau=log_uniform(0.05, 1.0))`)
    - `Config`: a frozen dataclass of hyperparameters whose `__post_init__` validates them (`check_range`);
    - `presets`: named Config instances a user picks with `preset=...`, keyword hyperparameters overriding them
      (without `preset` the Config's own defaults apply, so list them under a name too);
    - `tau_hyperparameters`: the Config fields that hold a temperature (contract tests pin them; `tau_bounds`);
    - `space`: name -> `uniform`/`log_uniform` range, what `search_space` suggests, in this order;
    - `grid`: name -> values, what `search_grid` returns (paper-style "accuracy vs hyperparameter" curves).

    A space that depends on the run's length (a schedule's period, milestones) or on its global batch (a ρ below
    log(B − 1)) overrides `search_space` instead.
    """

    name: ClassVar[str] = ""  # set by `register_strategy`
    pairing: ClassVar[str] = "views"  # what a batch pairs (`base.PAIRINGS`); set by `register_strategy`
    Config: ClassVar[type] = object
    presets: ClassVar[Mapping[str, Any]] = frozen()
    tau_hyperparameters: ClassVar[tuple[str, ...]] = ()
    build_options: ClassVar[tuple[str, ...]] = ()  # keywords besides the Config fields; "preset" when presets exist
    space: ClassVar[Mapping[str, Range]] = frozen()
    grid: ClassVar[Mapping[str, tuple[Any, ...]]] = frozen()
    # the global-τ strategy with this one's estimator (isogclr: sogclr), trained at its achieved median τ as the
    # τ-matched control that separates the individual τ from the estimator (`[controls] tau_matched` of a suite)
    shares_estimator_with: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Declaring presets is what makes `preset=` a keyword: added here so it cannot be forgotten, and kept an
        # attribute because the harness lists `build_options` (`tempbench strategies`). Only ever added: a plug-in
        # written to the old contract declares `build_options` itself and handles it in its own `build_config`.
        if cls.presets and "preset" not in cls.build_options:
            cls.build_options = ("preset", *cls.build_options)

    @classmethod
    def hyperparameter_names(cls) -> list[str]:
        """The Config's field names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls.Config)]

    @classmethod
    def accepted_hyperparameters(cls) -> list[str]:
        """Every keyword `create_strategy` takes for this strategy: the Config fields and the build options."""
        return [*cls.hyperparameter_names(), *cls.build_options]

    @classmethod
    def build_config(cls, **hyperparameters: Any) -> Any:
        """The Config from keyword hyperparameters, on top of `presets[preset]` when `preset` is given. An unknown
        preset or hyperparameter raises ValueError listing the valid ones, so does a value of the wrong type
        (`check_types`); the Config checks the values."""
        base = cls._preset(hyperparameters.pop("preset")) if cls.presets and "preset" in hyperparameters else None
        unknown = sorted(set(hyperparameters) - set(cls.hyperparameter_names()))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for strategy {cls.name!r}"
                             f"{did_you_mean(unknown[0], cls.accepted_hyperparameters())}; "
                             f"valid: {cls.hyperparameter_names()}")
        check_types(cls.Config, hyperparameters)
        return cls.Config(**hyperparameters) if base is None else dataclasses.replace(base, **hyperparameters)

    @classmethod
    def _preset(cls, preset: str) -> Any:
        if preset not in cls.presets:
            label = repr(cls.name) if cls.pairing == "views" else f"{cls.name!r} ({cls.pairing})"
            raise ValueError(f"unknown preset {preset!r} for strategy {label}; valid: {sorted(cls.presets)}")
        return cls.presets[preset]

    @classmethod
    def resolve_hyperparameters(cls, **hyperparameters: Any) -> dict[str, Any]:
        """Every hyperparameter with its value after presets and defaults: passing the result back to `create`
        builds the same config, so it is what result rows, hashes and tracking record."""
        return dataclasses.asdict(cls.build_config(**hyperparameters))

    @classmethod
    def create(cls, num_samples: int, **hyperparameters: Any) -> Self:
        """Build from keyword hyperparameters (what `create_strategy` calls)."""
        return cls(num_samples, cls.build_config(**hyperparameters))

    @classmethod
    def pinned_tau_hyperparameters(cls, tau: float) -> dict[str, Any]:
        """Hyperparameters that put every temperature this strategy can use at `tau` (e.g. the contract's
        smallest τ); by default every declared τ field set to `tau`."""
        return dict.fromkeys(cls.tau_hyperparameters, tau)

    @classmethod
    def hyperparameter_ranges(cls) -> dict[str, str]:
        """What each hyperparameter may be, as the config's own checks state it when the defaults are built
        (bounds that depend on another field, like τ_init in [τ_min, τ_max], are shown at the defaults)."""
        token = _RECORDED_RANGES.set({})
        try:
            cls.build_config()
            return dict(_RECORDED_RANGES.get())
        finally:
            _RECORDED_RANGES.reset(token)

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None, batch_size: int | None = None) -> dict[str, Any]:
        """Hyperparameters suggested by an Optuna `trial` from `space` (keyword arguments for `create_strategy`).

        `epochs` (the run's length) and `batch_size` (its global batch) are for overrides whose ranges depend on
        them; None means unknown (a ρ that must stay below log(B − 1) then assumes B = 512:
        `gcl_image_text.rho_ceiling`)."""
        return {name: trial.suggest_float(name, r.low, r.high, log=r.log) for name, r in cls.space.items()}

    @classmethod
    def search_grid(cls, *, epochs: int | None = None) -> dict[str, list[Any]]:
        """A copy of `grid`: name -> values for a grid study."""
        return {name: list(values) for name, values in cls.grid.items()}
