"""The metric registry: every number a result row reports is one `Metric` declaration, and the row, the leaderboard,
the command line's summary line and `--metric` all read it from here.

    @register_metric
    def knn5() -> Metric:       # or register_metric(Metric(...)) directly
        return Metric("knn5_top1", "kNN-5 top-1", "weighted kNN, k=5, T=0.1; bank: training split",
                      compute=lambda ev: ev.accuracy(ev.knn(5, 0.1)))

A metric computes one float from an `Evaluation` (tempbench.eval.evaluate: the features of one run, with its
predictions cached, so metrics that share a classifier share its cost). `split="val"` metrics are computed on
data held out from the training set (or a dataset's own validation split) and are the only ones a study may select
on; `split="test"` metrics are reported and never chosen on. Third-party metrics register through the entry-point
group ``tempbench.metrics`` (an entry point loads a `Metric`, or a module that registers metrics when imported).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tempbench.util import did_you_mean, load_entry_points

ENTRY_POINT_GROUP = "tempbench.metrics"
SPLITS = ("test", "val")
PAIRINGS = ("views", "image_text")


@dataclass(frozen=True)
class Metric:
    """One reported number.

    name:      the result-row column (lower-case, `[a-z0-9_]`).
    label:     how tables and axes name it ("kNN-200 top-1").
    protocol:  what it measures, precisely enough to compare with the literature (columns are labelled with it).
    compute:   Evaluation -> float (NaN where undefined, e.g. an empty class group); None for a row field that
               something other than the evaluation fills in (τ analytics), declared for its label and protocol.
    higher_is_better, unit: for ranking, bold cells and axis labels; unit "%" means 0–100.
    aggregate: how seeds combine: "mean" (mean ± Student-t 95 % CI) is the only one so far.
    leaderboard: a column of the default leaderboard; summary: in the one-line summary of a finished run.
    split:     "test" (reported, never selected on) or "val" (held out from training: what studies select on).
    pairing:   which runs report it: "views" (two augmented views) or "image_text" (CLIP-style pairs).
    """

    name: str
    label: str
    protocol: str
    compute: Callable[[Any], float] | None
    higher_is_better: bool = True
    unit: str = "%"
    aggregate: str = "mean"
    leaderboard: bool = False
    summary: bool = False
    split: str = "test"
    pairing: str = "views"

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c == "_" for c in self.name) or self.name != self.name.lower():
            raise ValueError(f"metric name must be lower-case letters, digits and _, got {self.name!r}")
        for field, value, valid in (("split", self.split, SPLITS), ("pairing", self.pairing, PAIRINGS),
                                    ("aggregate", self.aggregate, ("mean",))):
            if value not in valid:
                raise ValueError(f"metric {self.name!r}: {field} must be one of {valid}, got {value!r}")

    def axis_label(self) -> str:
        """The label with its unit, for figure axes: "kNN-200 top-1 (%)"; a unitless metric keeps its label."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


_REGISTRY: dict[str, Metric] = {}


def register_metric(metric: Metric | Callable[[], Metric]) -> Any:
    """Register a `Metric` (or a zero-argument function returning one, used as a decorator); returns its argument.
    A second metric under a name already taken is a ValueError."""
    found = metric() if callable(metric) and not isinstance(metric, Metric) else metric
    if not isinstance(found, Metric):
        raise TypeError(f"register_metric needs a Metric, got {found!r}")
    existing = _REGISTRY.get(found.name)
    if existing is not None and existing != found:
        raise ValueError(f"metric name {found.name!r} is already registered ({existing.protocol})")
    _REGISTRY[found.name] = found
    return metric


def _load_entry_points() -> None:
    """Register the built-in metrics, then the installed plug-ins (once per process): built-ins first, so the
    default leaderboard columns keep their order whatever is installed."""
    # imported here, not at the top: both modules import this one for `register_metric`
    from . import builtin_metrics, image_text_metrics  # noqa: F401  (registers the built-ins: views, image_text)

    load_entry_points(ENTRY_POINT_GROUP, _register_plugin)


def _register_plugin(name: str, obj: Any) -> None:
    """An entry point's object: a `Metric` is registered; anything else (a module that registered its metrics when
    imported) needs nothing more."""
    if isinstance(obj, Metric):
        register_metric(obj)


def list_metrics(pattern: str = "*", *, pairing: str | None = None, split: str | None = None) -> list[Metric]:
    """Registered metrics whose name matches `pattern`, optionally of one pairing and split, in registration order."""
    _load_entry_points()
    return [m for m in _REGISTRY.values() if fnmatch.fnmatchcase(m.name, pattern)
            and (pairing is None or m.pairing == pairing) and (split is None or m.split == split)]


def get_metric(name: str) -> Metric:
    """The metric called `name`; an unknown name raises ValueError with a did-you-mean and the registered names."""
    _load_entry_points()
    if name not in _REGISTRY:
        raise ValueError(f"unknown metric {name!r}{did_you_mean(name, _REGISTRY)}; registered: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def metric_label(name: str) -> str:
    """The label of a registered metric; the name itself for a column nobody declared."""
    _load_entry_points()
    return _REGISTRY[name].label if name in _REGISTRY else name


def summary_line(row: dict[str, Any]) -> str:
    """The registry's summary metrics of the row's pairing that it holds, as "label value" pairs on one line."""
    parts = []
    for m in list_metrics(pairing=row.get("pairing", "views")):
        value = row.get(m.name)
        if m.summary and isinstance(value, (int, float)):
            parts.append(f"{m.label} {value:.2f}")
    return "  ".join(parts)
