"""The strategy registry: `@register_strategy`, `create_strategy`, `list_strategies`, `get_strategy_class`.

Third-party packages add strategies through the entry-point group ``tempbench.strategies``; each entry point loads
either a `Strategy` subclass (registered under the entry point's name) or a module that registers its strategies with
the decorator when imported. Entry points are loaded once, on first use of the registry.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from .base import Strategy

ENTRY_POINT_GROUP = "tempbench.strategies"

_REGISTRY: dict[str, type[Strategy]] = {}
_entry_points_loaded = False

S = TypeVar("S", bound=type[Strategy])


def register_strategy(name: str) -> Callable[[S], S]:
    """Class decorator: register a `Strategy` subclass under `name` (lower-case, unique)."""

    def decorate(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise TypeError(f"@register_strategy({name!r}) must decorate a Strategy subclass, got {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            owner = f"{existing.__module__}.{existing.__name__}"
            raise ValueError(f"strategy name {name!r} is already registered by {owner}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if isinstance(obj, type) and issubclass(obj, Strategy) and ep.name not in _REGISTRY:
            register_strategy(ep.name)(obj)


def reload_entry_points() -> None:
    """Scan the entry-point group again (after installing a plugin into a running interpreter)."""
    global _entry_points_loaded
    _entry_points_loaded = False
    _load_entry_points()


def list_strategies(pattern: str = "*") -> list[str]:
    """Sorted names of the registered strategies matching a shell-style `pattern`."""
    _load_entry_points()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def get_strategy_class(name: str) -> type[Strategy]:
    """The class registered under `name`; an unknown name raises ValueError listing the registered ones."""
    _load_entry_points()
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; registered strategies: {', '.join(list_strategies())}")
    return _REGISTRY[name]


def create_strategy(name: str, num_samples: int, **hyperparameters: Any) -> Strategy:
    """Build strategy `name` for a training set of `num_samples` samples.

    Unknown names, unknown hyperparameters and out-of-range values raise ValueError naming the valid choices.
    """
    return get_strategy_class(name).create(num_samples, **hyperparameters)
