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
