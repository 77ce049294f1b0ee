"""A suite as a grid study on shared storage: Optuna's GridSampler over (entry, dataset, seed), each trial one
`train` run whose result row is stored with the trial (user attribute `tempbench.row`). The same command started on
any number of machines (or `devices`: one process per GPU here) shares one sweep and trains no run twice; the
leaderboard is built from every finished trial's row.

    job = SweepJob(configs, storage="postgresql+psycopg://bench@db/optuna", study_name="suite-quick", out="runs/q")
    study = run_grid_sweep(job, devices=["cuda:0", "cuda:1"])
    rows = sweep_rows(study)                       # a DataFrame like runs.csv, for build_leaderboard
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from tempbench.config import RunConfig
from tempbench.eval import summary_line
from tempbench.leaderboard import keep_row
from tempbench.tracking import NestedTracker, RunHandle
from tempbench.train import run_id, train

from .storage import DEFAULT_HEARTBEAT, open_storage, quiet_experimental
from .trial import process_tracker
from .workers import Budget, SurplusTrial, run_in_processes

ROW_ATTR = "tempbench.row"  # trial user attr: the run's result row
RUN_ATTR = "tempbench.run_id"  # trial user attr, set before training: a failed trial still says what it ran
AXES = ("entry", "dataset", "seed")  # the grid's parameters: an entry is a strategy with its hyperparameters


@dataclass
class SweepJob:
    """What every sweep worker needs (picklable): the suite's resolved runs and where the sweep lives."""

    configs: list[RunConfig]
    storage: str
    study_name: str
    out: str
    suite: str = ""
    tracking: bool = False
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    checkpoints: bool = False
    heartbeat: int | None = DEFAULT_HEARTBEAT

    @property
    def points(self) -> list[tuple[str, str, int]]:
        """Each config's grid point (entry, dataset, seed), in the suite's order (`entry_names`)."""
        return list(zip(entry_names(self.configs), (c.dataset for c in self.configs), (c.seed for c in self.configs)))

    @property
    def grid(self) -> dict[str, list]:
        """{axis: its values in the suite's order, each once} for AXES: the GridSampler's search space."""
        return {axis: list(dict.fromkeys(p[i] for p in self.points)) for i, axis in enumerate(AXES)}

    def config_at(self, entry: str, dataset: str, seed: int) -> RunConfig:
        """The suite's config at one grid point (every point has exactly one: `run_grid_sweep` checks)."""
        return self.configs[self.points.index((entry, dataset, seed))]


def entry_names(configs: list[RunConfig]) -> list[str]:
    """Each config's suite entry: its strategy's name, or `strategy#k` for the k-th hyperparameter set of a strategy
    the suite runs in several configurations (its variants), so each gets its own grid value."""
    sets: dict[str, list[str]] = {}
    keys = [json.dumps(c.hyperparameters, sort_keys=True) for c in configs]
    for c, key in zip(configs, keys):
        if key not in sets.setdefault(c.strategy, []):
            sets[c.strategy].append(key)
    return [c.strategy if len(sets[c.strategy]) == 1 else f"{c.strategy}#{sets[c.strategy].index(key)}"
            for c, key in zip(configs, keys)]


def run_grid_sweep(job: SweepJob, devices: list[str | None]) -> Any:
    """Open (or resume) the sweep's study, run one worker per device (in this process for a single one) until
    every grid point is COMPLETE; return the study."""
    if math.prod(len(v) for v in job.grid.values()) != len(job.configs) or len(set(job.points)) != len(job.configs):
        raise ValueError("a sweep needs every (strategy with its hyperparameters, dataset, seed) combination once")
    open_sweep(job)
    if len(devices) == 1:
        sweep_worker(job, devices[0])
    else:
        run_in_processes(sweep_worker, [(job, device) for device in devices])
    return optuna.load_study(study_name=job.study_name, storage=open_storage(job.storage, job.heartbeat))


def open_sweep(job: SweepJob) -> Any:
    """Create the sweep's study or load it; a study that holds another set of runs is refused."""
    study = optuna.create_study(storage=open_storage(job.storage, job.heartbeat), study_name=job.study_name,
                                load_if_exists=True, direction="minimize")
    run_ids = sorted(run_id(c) for c in job.configs)
    found = study.user_attrs.get("tempbench.run_ids")
    if found is None:
        for key, value in {"kind": "sweep", "suite": job.suite, "grid": job.grid, "run_ids": run_ids}.items():
            study.set_user_attr(f"tempbench.{key}", value)  # run_ids last: once they are there, all of them are
        with quiet_experimental():
            study.set_metric_names(["train_seconds"])  # a sweep selects nothing: its value is what a run cost
    elif found != run_ids:
        raise ValueError(f"study {job.study_name!r} holds a sweep of other runs (another suite or settings); pass "
                         "another --study")
    return study


def sweep_worker(job: SweepJob, device: str | None) -> None:
    """Train grid points until every one of them is COMPLETE (the same Budget as sensitivity studies)."""
    study = optuna.load_study(study_name=job.study_name, storage=open_storage(job.storage, job.heartbeat),
                              sampler=optuna.samplers.GridSampler(job.grid, seed=0))
    budget = Budget(len(job.configs))
    if budget.wait_for_slot(study):
        # a surplus trial fails on purpose (see workers.Budget.guard): catching it keeps this worker going
        study.optimize(budget.guard(_objective(job, device)), catch=(SurplusTrial,), callbacks=[budget],
                       gc_after_trial=False)


def _objective(job: SweepJob, device: str | None) -> Any:
    tracker = NestedTracker(process_tracker(job.tracking, job.tracking_uri, job.out), None,
                            tags={"tempbench.suite": job.suite, "optuna.study": job.study_name})

    def objective(trial: Any) -> float:
        point = {axis: trial.suggest_categorical(axis, values) for axis, values in job.grid.items()}
        config = job.config_at(**point)
        if device is not None:  # how it runs, not what: the run id and config hash stay the same
            config = dataclasses.replace(config, device=device)
        trial.set_user_attr(RUN_ATTR, run_id(config))
        row = train(config, out_dir=Path(job.out), tracker=tracker, checkpoints=job.checkpoints,
                    tracker_parent=RunHandle("sweep", job.parent_run_id))
        # user attrs must be JSON: the round trip turns paths, NumPy scalars etc. into strings and numbers once, here
        trial.set_user_attr(ROW_ATTR, json.loads(json.dumps(row, default=str)))
        keep_row(Path(job.out) / "runs.csv", row)  # this machine's rows too, as without --storage
        print(f"{job.study_name} trial {trial.number} {run_id(config)} on {config.device}: {summary_line(row)}",
              file=sys.stderr, flush=True)
        return float(row.get("time_train_s", 0.0))

    return objective


def sweep_rows(study: Any) -> pd.DataFrame:
    """The result rows of the sweep's COMPLETE trials, in trial order, shaped like runs.csv."""
    rows = [t.user_attrs[ROW_ATTR] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if ROW_ATTR in t.user_attrs]
    if not rows:
        raise ValueError(f"study {study.study_name!r} has no finished runs yet")
    return pd.DataFrame(rows)


def sweep_study_names(storage: str) -> list[str]:
    """The sweeps (studies made by `tempbench run --storage`) in `storage`."""
    summaries = optuna.get_all_study_summaries(open_storage(storage, heartbeat=None), include_best_trial=False)
    return sorted(s.study_name for s in summaries if s.user_attrs.get("tempbench.kind") == "sweep")
