"""Suite-wide setup. The example third-party strategy in tests/plugin is made importable *before* collection, so the
contract tests (parametrised over `list_strategies()`) cover it like a built-in."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).parent / "plugin"
sys.path.insert(0, str(PLUGIN_DIR))


@pytest.fixture
def quick_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Linear probes of at most 5 L-BFGS iterations per fit, for end-to-end tests whose subject is the plumbing (rows,
    CLI, tracking, studies), not the probe's optimum: the converged probe is most of a smoke run's time. The probe's
    own tests (tests/bench/eval/test_linear.py) and the full runs keep the converged one. (Imported here: the
    evaluation package needs pandas and scipy, which the GPU machine's bare environment may lack.)"""
    import importlib

    evaluate = importlib.import_module("tempbench.eval.evaluate")  # the module (the package exports a function too)
    monkeypatch.setattr(evaluate, "linear_probe", functools.partial(evaluate.linear_probe, max_iter=5))


@pytest.fixture
def caption_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tiny image–caption dataset in the tsv: layout Flickr8k uses: 24 16-px images (16 train, 4 val, 4 test),
    3 captions each; returns `tsv:PATH`. The cache (decoded images, caption embeddings) goes to tmp_path."""
    from PIL import Image

    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    words = ["dog", "cat", "red car", "beach", "child", "bike", "tree", "boat"]
    splits = {"train": [f"t{i}" for i in range(16)], "val": [f"v{i}" for i in range(4)],
              "test": [f"s{i}" for i in range(4)]}
    root = tmp_path / "captions"
    (root / "images").mkdir(parents=True)
    (root / "splits").mkdir()
    rows = ["image_id\tcaption_index\tcaption"]
    for n, image_id in enumerate(i for ids in splits.values() for i in ids):
        Image.new("RGB", (16, 16), (30 * n % 256, 255 - 20 * n % 256, 9 * n % 256)).save(
            root / "images" / f"{image_id}.png")
        rows += [f"{image_id}\t{c}\ta {words[(n + c) % 8]} next to a {words[n % 8]} ." for c in range(3)]
    (root / "captions.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for split, ids in splits.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return f"tsv:{root}"
