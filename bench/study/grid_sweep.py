"""A suite as a grid study on shared storage: Optuna's GridSampler over (entry, dataset, seed), each trial one
`train` run whose result row is stored with the trial (user attribute `tempbench.row`). The same command started on
any number of machines (or `devices`: one process per device or CPU worker here) shares one sweep and trains no run
twice; the leaderboard is built from every finished trial's row.

No run twice, whoever joins when: a point whose trials all failed (Ctrl-C, an error) is queued again when a command
opens the sweep (Optuna's GridSampler counts a failed point as visited and never returns to it), and a trial that
finds its run finished, or started first by another trial, stands down (`SurplusTrial`) before training.

    job = SweepJob(configs, storage="postgresql+psycopg://bench@db/optuna", study_name="suite-quick", out="runs/q")
    study = run_grid_sweep(job, devices=["cuda:0", "cuda:1"])
    rows = sweep_rows(study)                       # a DataFrame like runs.csv, for build_leaderboard
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from tempbench.config import RunConfig
from tempbench.eval import summary_line
from tempbench.leaderboard import keep_row, read_rows
from tempbench.tracking import NestedTracker, RunHandle, Tracker
from tempbench.train import run_id, train
from tempbench.util import RowNotKept

from .storage import DEFAULT_HEARTBEAT, open_storage, quiet_experimental, worker_id
from .trial import process_tracker
from .workers import HELD, SURPLUS_ATTR, Budget, SurplusTrial, WorkersLost, on_death_retry, run_in_processes

ROW_ATTR = "tempbench.row"  # trial user attr: the run's result row
RUN_ATTR = "tempbench.run_id"  # trial user attr, set before training: a failed trial still says what it ran
COMMAND_ATTR = "tempbench.command"  # trial user attr: "host:pid:nonce" of the `tempbench run` whose worker took it
REUSED_ATTR = "tempbench.reused"  # trial user attr: True when its row came from runs.csv instead of training
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
    # who made the job, recorded on each trial its workers take: what a command counts as trained by itself in a
    # sweep other commands share
    command: str = field(default_factory=lambda: f"{worker_id()}:{uuid.uuid4().hex[:8]}")
    reuse_rows: bool = True  # a run runs.csv already holds is not trained again (False: a --rerun's sweep)
    progress: bool = True  # one line per finished run on stderr

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


def run_grid_sweep(job: SweepJob, devices: list[str | None], tracker: Tracker | None = None) -> Any:
    """Open (or resume) the sweep's study, run one worker per device (in this process for a single one, tracking
    through `tracker` when given) until every grid point is COMPLETE; return the study."""
    if math.prod(len(v) for v in job.grid.values()) != len(job.configs) or len(set(job.points)) != len(job.configs):
        raise ValueError("a sweep needs every (strategy with its hyperparameters, dataset, seed) combination once")
    study = open_sweep(job)
    requeue_failed(study)
    if len(devices) == 1:
        sweep_worker(job, devices[0], tracker)
    else:  # a killed worker's run is failed and queued again at once, for a surviving worker to train
        run_in_processes(sweep_worker, [(job, device) for device in devices], on_death=on_death_retry(study))
    study = optuna.load_study(study_name=job.study_name, storage=open_storage(job.storage, job.heartbeat))
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if done < len(job.configs) and len(devices) > 1 and not job.storage.startswith(("postgresql", "mysql")):
        raise WorkersLost(f"the workers ended with {done} of {len(job.configs)} runs finished (some were killed); "
                          "the sweep is kept: run the same command again to train the rest")
    return study


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


def requeue_failed(study: Any) -> int:
    """Queue again, as Optuna's heartbeat retry does, every grid point whose trials all ended FAIL (a run stopped by
    Ctrl-C or an error); returns how many. Two commands opening the sweep at once may queue one point twice: the
    copies keep its `grid_id`, so `Budget.guard` runs only the first."""
    trials = study.get_trials(deepcopy=False)
    held = {_point(t) for t in trials if t.state in HELD}
    failed = {_point(t): t for t in trials if t.state == TrialState.FAIL and t.params}
    for point, trial in failed.items():
        if point not in held:
            study.add_trial(optuna.create_trial(state=TrialState.WAITING, params=trial.params,
                                                distributions=trial.distributions,
                                                system_attrs={**trial.system_attrs, "failed_trial": trial.number}))
    return len(failed.keys() - held)


def _point(trial: Any) -> tuple:
    """A trial's grid point, (entry, dataset, seed): its params, or those it was queued with."""
    params = trial.params or trial.system_attrs.get("fixed_params", {})
    return tuple(params.get(axis) for axis in AXES)


def sweep_worker(job: SweepJob, device: str | None, tracker: Tracker | None = None) -> None:
    """Train grid points until every one of them is COMPLETE (the same Budget as sensitivity studies); a worker
    that joins when the rest of the grid is running elsewhere waits for it (`Budget.wait_for_slot`)."""
    study = optuna.load_study(study_name=job.study_name, storage=open_storage(job.storage, job.heartbeat),
                              sampler=optuna.samplers.GridSampler(job.grid, seed=0))
    budget = Budget(len(job.configs))
    if budget.wait_for_slot(study):
        # a surplus trial fails on purpose (see workers.Budget.guard): catching it keeps this worker going
        study.optimize(budget.guard(_objective(job, device, tracker)), catch=(SurplusTrial,), callbacks=[budget],
                       gc_after_trial=False)


def _objective(job: SweepJob, device: str | None, tracker: Tracker | None) -> Any:
    tracker = NestedTracker(tracker or process_tracker(job.tracking, job.tracking_uri, job.out), None,
                            tags={"tempbench.suite": job.suite, "optuna.study": job.study_name})
    kept = finished_rows(Path(job.out) / "runs.csv") if job.reuse_rows else {}

    def objective(trial: Any) -> float:
        point = {axis: trial.suggest_categorical(axis, values) for axis, values in job.grid.items()}
        config = job.config_at(**point)
        if device is not None:  # how it runs, not what: the run id and config hash stay the same
            config = dataclasses.replace(config, device=device)
        trial.set_user_attr(RUN_ATTR, run_id(config))
        trial.set_user_attr(COMMAND_ATTR, job.command)
        stand_down_if_taken(trial, run_id(config))
        trial.set_user_attr(REUSED_ATTR, run_id(config) in kept)
        if run_id(config) in kept:  # in runs.csv already (an earlier suite, or before sweeps): its row, not a rerun
            trial.set_user_attr(ROW_ATTR, kept[run_id(config)])
            return float(kept[run_id(config)].get("time_train_s") or 0.0)
        row = train(config, out_dir=Path(job.out), tracker=tracker, checkpoints=job.checkpoints,
                    tracker_parent=RunHandle("sweep", job.parent_run_id))
        # user attrs must be JSON: the round trip turns paths, NumPy scalars etc. into strings and numbers once, here
        trial.set_user_attr(ROW_ATTR, json.loads(json.dumps(row, default=str)))
        try:
            keep_row(Path(job.out) / "runs.csv", row)  # this machine's rows too, as without --storage
        except RowNotKept as exc:  # no file takes it: stdout does, and the trial (the leaderboard's source) keeps it
            print(json.dumps(exc.row, default=str), flush=True)
            print(f"tempbench run: warning: {exc}", file=sys.stderr, flush=True)
        if job.progress:
            print(f"{job.study_name} trial {trial.number} {run_id(config)} on {config.device}: {summary_line(row)}",
                  file=sys.stderr, flush=True)
        return float(row.get("time_train_s", 0.0))

    return objective


def stand_down_if_taken(trial: Any, run: str) -> None:
    """Raise SurplusTrial when another trial has finished `run`, or started it first (a lower number) and is still
    running. Each trial records its run before it looks, so of two that start one run at the same moment the later
    one always sees the earlier: the last word on "no run twice", whatever grid ids the trials hold."""
    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if other.number == trial.number or other.user_attrs.get(RUN_ATTR) != run:
            continue
        if other.state == TrialState.COMPLETE or other.number < trial.number:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise SurplusTrial(f"trial {trial.number} not run: trial {other.number} holds run {run}")


def finished_rows(path: Path) -> dict[str, dict[str, Any]]:
    """{run_id: row} of the runs already in the folder's runs.csv (empty without one), as JSON-ready dicts: a suite
    extended with new strategies or seeds starts a new sweep that reuses them instead of training them again."""
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    rows = json.loads(read_rows(path).to_json(orient="records"))  # NumPy scalars to JSON numbers, NaN to null
    return {str(r["run_id"]): r for r in rows}


def sweep_name(storage: str, base: str, configs: list[RunConfig]) -> str:
    """`base` unless that study holds another set of runs (the suite changed since it ran); then `base-DIGEST`, one
    name per set of runs, so the changed suite gets its own sweep (which reuses the rows runs.csv already holds)."""
    try:
        found = optuna.load_study(study_name=base, storage=open_storage(storage, heartbeat=None)).user_attrs
    except KeyError:
        return base
    run_ids = sorted(run_id(c) for c in configs)
    if found.get("tempbench.run_ids", run_ids) == run_ids:
        return base
    return f"{base}-{hashlib.sha256(json.dumps(run_ids).encode()).hexdigest()[:8]}"


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
