"""The strategy registry: `@register_strategy`, `create_strategy`, `list_strategies`, `get_strategy_class`,
`strategy_pairings`.

The registry is keyed by (name, pairing): one strategy name, say `isogclr`, may have a class for two augmented views
("views") and another for image–caption pairs ("image_text"); each class serves exactly one pairing (its `pairing`
class attribute, set here).

Third-party packages add strategies through the entry-point group ``tempbench.strategies``; each entry point loads
either a `Strategy` subclass (registered under the entry point's name and its own `pairing` attribute) or a module
that registers its strategies with the decorator when imported. Entry points are loaded once, on first use.

Code that routes keyword settings to either a strategy or something else (the harness's run settings) reserves its
names with `reserve_hyperparameter_names`: a strategy whose hyperparameter takes a reserved name is refused when it
registers, so a `key=value` can never be routed to the wrong owner.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from tempbench.util import did_you_mean, load_entry_points

from .base import PAIRINGS, Strategy

ENTRY_POINT_GROUP = "tempbench.strategies"

_REGISTRY: dict[str, dict[str, type[Strategy]]] = {}  # name -> pairing -> class
_RESERVED: dict[str, str] = {}  # hyperparameter name -> who owns it instead
# `create_strategy`'s own keywords can never be hyperparameters
_OWN_KEYWORDS = {"name": "create_strategy's argument", "num_samples": "create_strategy's argument",
                 "pairing": "create_strategy's argument"}

S = TypeVar("S", bound=type[Strategy])


def register_strategy(name: str, pairing: str = "views") -> Callable[[S], S]:
    """Class decorator: register a `Strategy` subclass as strategy `name` for one `pairing` (one of `PAIRINGS`).
    Sets the class's `name` and `pairing` attributes."""
    _check_pairing(pairing)

    def decorate(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise TypeError(f"@register_strategy({name!r}) must decorate a Strategy subclass, got {cls!r}")
        existing = _REGISTRY.get(name, {}).get(pairing)
        if existing is not None and existing is not cls:
            owner = f"{existing.__module__}.{existing.__name__}"
            raise ValueError(f"strategy name {name!r} ({pairing}) is already registered by {owner}")
        if any(c is cls for k, c in _all_classes() if k != (name, pairing)):
            raise ValueError(f"{cls.__name__} is already registered under another name or pairing; a class serves "
                             f"one (name, pairing): subclass it")
        _check_declarations(name, cls)
        cls.name, cls.pairing = name, pairing
        _REGISTRY.setdefault(name, {})[pairing] = cls
        return cls

    return decorate


def _all_classes() -> list[tuple[tuple[str, str], type[Strategy]]]:
    return [((n, p), c) for n, by_pairing in _REGISTRY.items() for p, c in by_pairing.items()]


def _check_pairing(pairing: str) -> None:
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r}; valid: {', '.join(PAIRINGS)}")


def _check_declarations(name: str, cls: type[Strategy]) -> None:
    """No hyperparameter may take a reserved name, τ fields and search names must be Config fields, presets Config
    instances, and the declared capabilities must be consistent."""
    fields = set(cls.accepted_hyperparameters())
    reserved = {**_OWN_KEYWORDS, **_RESERVED}
    clash = sorted(fields & set(reserved))
    if clash:
        owners = ", ".join(f"{n!r} ({reserved[n]})" for n in clash)
        raise ValueError(f"strategy {name!r} has hyperparameter(s) named like {owners}; rename them, or `--set` "
                         f"could not tell them apart")
    for declaration in ("tau_hyperparameters", "space", "grid"):
        stray = sorted(set(getattr(cls, declaration)) - fields)
        if stray:
            raise ValueError(f"strategy {name!r} declares {declaration} {stray} that its Config lacks")
    not_configs = sorted(k for k, v in cls.presets.items() if not isinstance(v, cls.Config))
    if not_configs:
        raise ValueError(f"strategy {name!r} has presets {not_configs} that are not {cls.Config.__name__} instances")
    if cls.per_sample_tau and not cls.per_sample_state:
        raise ValueError(f"strategy {name!r} declares per_sample_tau without per_sample_state")
    if not isinstance(cls.extra_outputs, int) or cls.extra_outputs < 0:
        raise ValueError(f"strategy {name!r} declares extra_outputs = {cls.extra_outputs!r}; it must be an int >= 0")


def reserve_hyperparameter_names(names: list[str], owner: str) -> None:
    """Forbid these names as strategy hyperparameters (checked now for every registered (name, pairing), later at
    registration for the rest). `owner` names who uses them, for the error message."""
    _RESERVED.update(dict.fromkeys(names, owner))
    for (name, _), cls in _all_classes():
        _check_declarations(name, cls)


def _register_entry_point(name: str, obj: Any) -> None:
    """A `Strategy` subclass is filed under the entry point's name and its own `pairing`; a module registered its
    strategies with the decorator when it was imported, so it needs nothing more."""
    if isinstance(obj, type) and issubclass(obj, Strategy) and obj.pairing not in _REGISTRY.get(name, {}):
        register_strategy(name, pairing=obj.pairing)(obj)


def _load_entry_points() -> None:
    load_entry_points(ENTRY_POINT_GROUP, _register_entry_point)


def list_strategies(pattern: str = "*", pairing: str | None = None) -> list[str]:
    """Sorted names of the registered strategies matching a shell-style `pattern`; with `pairing`, only the names
    that have a class for it."""
    _load_entry_points()
    if pairing is not None:
        _check_pairing(pairing)
    return sorted(n for n, by_pairing in _REGISTRY.items()
                  if fnmatch.fnmatchcase(n, pattern) and (pairing is None or pairing in by_pairing))


def _known(name: str) -> dict[str, type[Strategy]]:
    _load_entry_points()
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}{did_you_mean(name, _REGISTRY)}; registered strategies: "
                         f"{', '.join(list_strategies())}")
    return _REGISTRY[name]


def strategy_pairings(name: str) -> list[str]:
    """The pairings strategy `name` has a class for, in `PAIRINGS` order; an unknown name raises ValueError."""
    by_pairing = _known(name)
    return [p for p in PAIRINGS if p in by_pairing]


def get_strategy_class(name: str, pairing: str = "views") -> type[Strategy]:
    """The class registered as (`name`, `pairing`). An unknown name raises ValueError listing the registered ones
    (with a did-you-mean hint); a known name without that pairing raises ValueError naming the pairings it has."""
    _check_pairing(pairing)
    by_pairing = _known(name)
    if pairing not in by_pairing:
        raise ValueError(f"strategy {name!r} supports pairings {strategy_pairings(name)}, not {pairing!r}")
    return by_pairing[pairing]


def create_strategy(name: str, num_samples: int, pairing: str = "views", **hyperparameters: Any) -> Strategy:
    """Build strategy `name` for `pairing` and a training set of `num_samples` samples (image_text: pairs).

    Unknown names, unsupported pairings, unknown hyperparameters and out-of-range values raise ValueError naming
    the valid choices.
    """
    return get_strategy_class(name, pairing).create(num_samples, **hyperparameters)
