"""The glue between a study and training: a picklable trial function that resolves a trial's suggestion into a
`RunConfig`, trains it (nested under the study's MLflow run) and reports the validation monitor to the pruner."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tempbench.config import resolve_run_config
from tempbench.tracking import NestedTracker, RunHandle, create_tracker
from tempbench.train import train

MONITOR_METRIC = "knn_monitor"  # the per-epoch metric fed to the pruner (kNN on the held-out validation slice)


@dataclass(frozen=True)
class RunnerTrialFn:
    """A `TrialFn` that trains one run (`tempbench.train`). A module-level object rather than a closure, so
    `--workers N` can pickle it into spawned processes."""

    dataset: str
    epochs: int | None
    seed: int
    metric: str
    out_dir: str
    tracking: bool
    tracking_uri: str | None
    parent_run_id: str | None = None
    run_settings: dict[str, Any] = field(default_factory=dict)  # RunConfig fields shared by every trial (--set)

    def __call__(self, strategy: str, params: dict, reporter: Any) -> dict[str, Any]:
        # The glue to training, kept in this one method. params = {"strategy": {...}, "optim": {...}}: strategy
        # hyperparameters and shared run settings (lr, ...) the search suggested.
        settings = {**self.run_settings, **params["optim"], "seed": self.seed,
                    **({"epochs": self.epochs} if self.epochs is not None else {})}
        config = resolve_run_config(strategy, self.dataset, settings=settings, hyperparameters=params["strategy"])
        tracker = NestedTracker(_process_tracker(self.tracking, self.tracking_uri, self.out_dir), None,
                                tags={"optuna.study": reporter.study_name, "optuna.trial": str(reporter.trial_number)})

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            if MONITOR_METRIC in metrics and math.isfinite(metrics[MONITOR_METRIC]):  # every k epochs, maybe
                reporter.report(epoch, metrics[MONITOR_METRIC])

        # No out_dir: a trial keeps no checkpoint (a killed trial is re-run whole); its τ table goes to tracking.
        row = train(config, tracker=tracker, tracker_parent=RunHandle("study", self.parent_run_id),
                           on_epoch=on_epoch)
        if self.metric not in row:
            raise ValueError(f"the run's result row has no metric {self.metric!r}; it has {sorted(row)}")
        numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return {**numbers, "objective": row[self.metric]}


@dataclass(frozen=True)
class LogUniformSpace:
    """An `extra_space` that searches one shared optimiser hyperparameter log-uniformly (picklable, for workers)."""

    name: str
    low: float
    high: float

    def __call__(self, trial: Any) -> dict[str, float]:
        return {self.name: trial.suggest_float(self.name, self.low, self.high, log=True)}


@functools.cache
def _process_tracker(enabled: bool, tracking_uri: str | None, out_dir: str) -> Any:
    """One tracker per process, so a dead server warns once per worker rather than once per trial."""
    return create_tracker(enabled, tracking_uri, Path(out_dir))
