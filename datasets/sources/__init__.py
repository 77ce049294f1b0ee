"""Sources: a string `kind:argument[?option=value&...]` names where images come from. Each kind is one module that
registers a `Source` — its name, help line, options with their defaults, and a loader returning `RawSplits` (uint8
(N, C, H, W) train and test images, int64 labels, class names).

    @register_source
    def my_source() -> Source:
        return Source("mykind", "mykind:PATH — what it reads", options={"split_seed": 0}, load=load_mykind)

Third-party kinds register through the entry-point group ``tempbench.sources`` (an entry point loads a `Source`, or a
module that registers sources when imported).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qsl

from ..splits import RawSplits

ENTRY_POINT_GROUP = "tempbench.sources"
# loader(argument, options, image_size, channels): image_size/channels are the target the caller wants (None: the
# source's own); loaders that decode images (folders, hub) decode straight to them, the others return as stored.
Loader = Callable[[str, dict[str, Any], "int | None", "int | None"], RawSplits]


@dataclass(frozen=True)
class Source:
    """A source kind: `name` (the part before the colon), a one-line `help` that starts with its syntax, its
    `options` (name -> default; an unknown option is an error) and `load`."""

    name: str
    help: str
    load: Loader
    options: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, Source] = {}
_entry_points_loaded = False


def register_source(source: Source | Callable[[], Source]) -> Any:
    """Register a `Source` (or a zero-argument function returning one, as a decorator); returns its argument."""
    found = source() if callable(source) and not isinstance(source, Source) else source
    if not isinstance(found, Source):
        raise TypeError(f"register_source needs a Source, got {found!r}")
    if found.name in _REGISTRY and _REGISTRY[found.name] != found:
        raise ValueError(f"source kind {found.name!r} is already registered")
    _REGISTRY[found.name] = found
    return source


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from . import huggingface, idx_files, image_folder, sklearn_digits, torchvision_cifar  # noqa: F401

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if isinstance(obj, Source):
            register_source(obj)


def list_sources() -> list[Source]:
    """Every registered source kind, sorted by name."""
    _load_entry_points()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_source(kind: str) -> Source:
    """The source kind `kind`; an unknown one raises ValueError listing the registered kinds."""
    _load_entry_points()
    if kind not in _REGISTRY:
        close = difflib.get_close_matches(kind, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown source kind {kind!r}{hint}; source kinds: {', '.join(sorted(_REGISTRY))} "
                         f"(as kind:argument)")
    return _REGISTRY[kind]


def parse_source(spec: str) -> tuple[Source, str, dict[str, str]]:
    """'kind:argument?a=1&b=2' -> (the Source, argument, {"a": "1", "b": "2"})."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise ValueError(f"{spec!r} is not a source string (kind:argument)")
    source = get_source(kind)
    argument, _, query = rest.partition("?")
    if not argument:
        raise ValueError(f"source {spec!r} needs an argument after {kind}:, e.g. {source.help.split()[0]}")
    return source, argument, dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))


def source_options(source: Source, options: dict[str, Any]) -> dict[str, Any]:
    """The source's option defaults updated from `options`; an unknown option is a ValueError listing the valid."""
    unknown = sorted(set(options) - set(source.options))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for source kind {source.name!r}; valid: "
                         f"{sorted(source.options) or 'none'}")
    return {**source.options, **options}


def load_source(spec: str, options: dict[str, Any] | None = None, image_size: int | None = None,
                channels: int | None = None) -> RawSplits:
    """Load a source string. Options from the string and `options` (which win) are checked against the kind's."""
    source, argument, query = parse_source(spec)
    return source.load(argument, source_options(source, {**query, **(options or {})}), image_size, channels)
