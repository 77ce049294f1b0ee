"""Sources: a string `kind:argument[?option=value&...]` names where images come from. Each kind is one module that
registers a `Source` — its name, help line, options with their defaults, and a loader returning `RawSplits` (uint8
(N, C, H, W) train and test images, int64 labels, class names).

    @register_source
    def my_source() -> Source:
        return Source("mykind", "mykind:PATH — what it reads", options={"split_seed": 0}, load=load_mykind)

Third-party kinds register through the entry-point group ``tempbench.sources`` (an entry point loads a `Source`, or a
module that registers sources when imported).

Pairing: a kind's `pairing` says what its loader returns, "views" (`RawSplits`: labelled images for two-view runs) or
"image_text" (`RawCaptions`: images with captions, for CLIP-style runs). A kind may also have an image_text variant
(`register_caption_variant`), chosen when the source string or the options set `caption`: `hf:NAME?caption=COL`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tempbench.util import did_you_mean, load_entry_points

from ..captions import RawCaptions
from ..splits import RawSplits

ENTRY_POINT_GROUP = "tempbench.sources"
# loader(argument, options, image_size, channels): image_size/channels are the target the caller wants (None: the
# source's own); loaders that decode images (folders, hub) decode straight to them, the others return as stored.
# A views kind returns RawSplits, an image_text kind RawCaptions.
Loader = Callable[[str, dict[str, Any], "int | None", "int | None"], "RawSplits | RawCaptions"]


@dataclass(frozen=True)
class Source:
    """A source kind: `name` (the part before the colon), a one-line `help` that starts with its syntax, its
    `options` (name -> default; an unknown option is an error), `load`, and its `pairing` ("views" or
    "image_text": what `load` returns and which runs can use it)."""

    name: str
    help: str
    load: Loader
    options: dict[str, Any] = field(default_factory=dict)
    pairing: str = "views"

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ValueError(f"source kind {self.name!r}: pairing must be one of {PAIRINGS}, got {self.pairing!r}")


PAIRINGS = ("views", "image_text")
VARIANT_OPTION = "caption"  # setting it picks a kind's image_text variant
_REGISTRY: dict[str, Source] = {}
_VARIANTS: dict[str, Source] = {}  # kind -> its image_text variant


def register_source(source: Source | Callable[[], Source]) -> Any:
    """Register a `Source` (or a zero-argument function returning one, as a decorator); returns its argument."""
    found = source() if callable(source) and not isinstance(source, Source) else source
    if not isinstance(found, Source):
        raise TypeError(f"register_source needs a Source, got {found!r}")
    if found.name in _REGISTRY and _REGISTRY[found.name] != found:
        raise ValueError(f"source kind {found.name!r} is already registered")
    _REGISTRY[found.name] = found
    return source


def register_caption_variant(source: Source) -> Source:
    """Register the image_text variant of an existing kind (same name; it must declare the `caption` option):
    source strings of that kind that set `caption` load through it."""
    if source.pairing != "image_text" or VARIANT_OPTION not in source.options:
        raise ValueError(f"a caption variant needs pairing='image_text' and a {VARIANT_OPTION!r} option")
    if source.name in _VARIANTS and _VARIANTS[source.name] != source:
        raise ValueError(f"source kind {source.name!r} already has a caption variant")
    _VARIANTS[source.name] = source
    return source


def select_variant(source: Source, options: dict[str, Any]) -> Source:
    """`source`'s image_text variant when `options` set `caption` and it has one, else `source`."""
    return _VARIANTS.get(source.name, source) if options.get(VARIANT_OPTION) not in (None, "") else source


def _load_entry_points() -> None:
    """Register the built-in kinds (by importing their modules), then the installed plug-ins, once per process."""
    # the built-in kinds; caption_tsv, hf_captions and webdataset_shards are the image_text ones. Imported here,
    # not at the top: each of them imports this module for `register_source`.
    from . import (  # noqa: F401
        caption_tsv,
        hf_captions,
        huggingface,
        idx_files,
        image_folder,
        sklearn_digits,
        torchvision_cifar,
        webdataset_shards,
    )

    load_entry_points(ENTRY_POINT_GROUP, _register_plugin)


def _register_plugin(name: str, obj: Any) -> None:
    """An entry point's object: a `Source` is registered; anything else (a module that registered its kinds when
    imported) needs nothing more."""
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
        raise ValueError(f"unknown source kind {kind!r}{did_you_mean(kind, _REGISTRY)}; source kinds: "
                         f"{', '.join(sorted(_REGISTRY))} (as kind:argument)")
    return _REGISTRY[kind]


def parse_source(spec: str) -> tuple[Source, str, dict[str, str]]:
    """'kind:argument?a=1&b=2' -> (the Source, argument, {"a": "1", "b": "2"}); the Source is the kind's caption
    variant when the query sets `caption` (no data is read: `dataset_pairing` relies on that)."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise ValueError(f"{spec!r} is not a source string (kind:argument)")
    source = get_source(kind)
    argument, _, query = rest.partition("?")
    if not argument:
        raise ValueError(f"source {spec!r} needs an argument after {kind}:, e.g. {source.help.split()[0]}")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    return select_variant(source, options), argument, options


def source_options(source: Source, options: dict[str, Any]) -> dict[str, Any]:
    """The source's option defaults updated from `options`; an unknown option is a ValueError listing the valid."""
    unknown = sorted(set(options) - set(source.options))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for source kind {source.name!r}; valid: "
                         f"{sorted(source.options) or 'none'}")
    return {**source.options, **options}


def load_source(spec: str, options: dict[str, Any] | None = None, image_size: int | None = None,
                channels: int | None = None) -> RawSplits | RawCaptions:
    """Load a source string. Options from the string and `options` (which win) are checked against the kind's."""
    source, argument, query = parse_source(spec)
    merged = {**query, **(options or {})}
    source = select_variant(source, merged)  # `caption` may come as a keyword option
    return source.load(argument, source_options(source, merged), image_size, channels)
