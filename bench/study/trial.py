"""The glue between a study and training: a picklable trial function that resolves a trial's suggestion into a
`RunConfig`, trains it (nested under the study's MLflow run, named after the trial) and reports the validation
monitor to the pruner."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from tempbench.config import resolve_run_config
from tempbench.tracking import NestedTracker, RunHandle, Tracker, create_tracker
from tempbench.train import train

TRIAL_STATE_TAG = "tempbench.trial_state"  # COMPLETE or PRUNED on a trial's MLflow run


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
        # hyperparameters and shared run settings (lr, ...) the search suggested; "seed" in a repeats study.
        settings = {**self.run_settings, **params["optim"], "seed": params.get("seed", self.seed),
                    **({"epochs": self.epochs} if self.epochs is not None else {})}
        config = resolve_run_config(strategy, self.dataset, settings=settings, hyperparameters=params["strategy"])
        tracker = TrialTracker(process_tracker(self.tracking, self.tracking_uri, self.out_dir), reporter,
                               trial_run_name(reporter, params))

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            # the pairing's validation monitor (views: kNN on the held-out slice; image_text: val r_mean)
            value = metrics.get(config.pairing.monitor_metric, math.nan)
            if math.isfinite(value):  # every monitor_every epochs
                try:
                    reporter.report(epoch, value)
                except optuna.TrialPruned:
                    tracker.pruned = True  # the runner ends its run FAILED on any exception: shown as KILLED
                    raise

        # No out_dir: a trial keeps no checkpoint (a killed trial is re-run whole); its τ table goes to tracking.
        row = train(config, tracker=tracker, tracker_parent=RunHandle("study", self.parent_run_id), on_epoch=on_epoch)
        if self.metric not in row:
            raise ValueError(f"the run's result row has no metric {self.metric!r}; it has {sorted(row)}")
        numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return {**numbers, "objective": row[self.metric]}


class TrialTracker(NestedTracker):
    """The tracker one trial's run goes through: named after the study, trial and hyperparameters, tagged with the
    trial, and ended KILLED with `tempbench.trial_state=PRUNED` (never FAILED) when the pruner stopped it."""

    def __init__(self, tracker: Tracker, reporter: Any, name: str) -> None:
        super().__init__(tracker, None, tags={"optuna.study": reporter.study_name,
                                              "optuna.trial": str(reporter.trial_number)})
        self.name = name
        self.pruned = False

    def start_run(self, name: str, params: Mapping[str, Any], *, parent: RunHandle | None = None,
                  tags: Mapping[str, str] | None = None, key: str | None = None) -> RunHandle:
        """The trial's run, named after the trial (`trial_run_name`) whatever name the runner passes."""
        return super().start_run(self.name, params, parent=parent, tags=tags, key=key)

    def end_run(self, run: RunHandle, status: str = "FINISHED") -> None:
        """End the run tagged with the trial's state (COMPLETE, PRUNED or FAIL). The runner ends a run that raised
        as FAILED, and the pruner stops a trial by raising TrialPruned: such a run ends KILLED instead."""
        if self.pruned and status == "FAILED":
            status = "KILLED"
        state = "PRUNED" if self.pruned else "COMPLETE" if status == "FINISHED" else "FAIL"
        self.tracker.set_tags(run, {TRIAL_STATE_TAG: state})
        super().end_run(run, status)


def trial_run_name(reporter: Any, params: dict[str, Any]) -> str:
    """`STUDY #N tau=0.23 rho=0.4`: what the MLflow UI lists for a trial."""
    values = {**params.get("strategy", {}), **params.get("optim", {})}
    if "seed" in params:
        values["seed"] = params["seed"]
    shown = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    return f"{reporter.study_name} #{reporter.trial_number} {shown}".strip()


@dataclass(frozen=True)
class LogUniformSpace:
    """An `extra_space` that searches one shared optimiser hyperparameter log-uniformly (picklable, for workers)."""

    name: str
    low: float
    high: float

    def __call__(self, trial: Any) -> dict[str, float]:
        return {self.name: trial.suggest_float(self.name, self.low, self.high, log=True)}


@functools.cache
def process_tracker(enabled: bool, tracking_uri: str | None, out_dir: str) -> Tracker:
    """One tracker per process (the study's parent run and its trials share it), so a dead server warns once per
    worker rather than once per trial."""
    return create_tracker(enabled, tracking_uri, Path(out_dir))
