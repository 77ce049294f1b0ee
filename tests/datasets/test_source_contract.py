"""Contract tests over every registered source kind (built-ins and any plug-in): each declares its syntax, pairing
and options, parses its own syntax, and refuses an unknown option by naming the valid ones."""

from __future__ import annotations

import pytest

from tempbench.datasets import list_sources, parse_source
from tempbench.datasets.sources import Source, source_options

SOURCES = list_sources()


def test_the_built_in_kinds_are_registered() -> None:
    assert {"sklearn", "torchvision", "imagefolder", "hf", "idx", "tsv", "wds"} <= {s.name for s in SOURCES}


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_every_source_declares_its_syntax_pairing_and_options(source: Source) -> None:
    assert source.help.startswith(f"{source.name}:") and " — " in source.help
    assert source.pairing in ("views", "image_text")
    assert isinstance(source.options, dict) and callable(source.load)


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_every_source_parses_its_syntax_and_checks_its_options(source: Source) -> None:
    query = "&".join(f"{k}=1" for k in list(source.options)[:2])
    found, argument, options = parse_source(f"{source.name}:some/argument" + (f"?{query}" if query else ""))
    assert found.name == source.name and argument == "some/argument"
    assert set(options) == set(list(source.options)[:2])
    assert source_options(source, options).keys() == source.options.keys()
    with pytest.raises(ValueError, match=f"unknown option.*for source kind '{source.name}'; valid"):
        source_options(source, {"no_such_option": "1"})
