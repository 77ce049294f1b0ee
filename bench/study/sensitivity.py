"""Hyperparameter-sensitivity studies: one Optuna study per (strategy, dataset) over the strategy's own search space,
with the training injected as a `TrialFn`, so the machinery runs and is tested without the runner.

    def trial_fn(strategy: str, params: dict, reporter: Reporter) -> float | dict:
        ...  # params = {"strategy": {kwargs for create_strategy}, "optim": {extra, e.g. lr}} (+ "seed" in repeats)
        reporter.report(epoch, val_acc)       # raises optuna.TrialPruned when the pruner says so
        return {"objective": final_val_acc, "knn200_top1": test_acc, ...}

    study = run_study("isogclr", trial_fn, n_trials=32, grid=False, storage=None, study_name="isogclr-cifar10",
                      out_dir=Path("runs/sens"), metric="val_knn200_top1", test_metric="knn200_top1")

The value Optuna stores, samples on, prunes on and ranks by is the objective, a validation metric; the test
metrics ride along as user attributes and are only reported. Design (`samplers`): Sobol points by default, the
strategy's grid with `grid=True`, TPE with `goal="tune"`; pruning only with `prune`. Workers (`workers`): any
number of processes on the storage, local (`workers=N`, spawned) or started anywhere with the same arguments.
Storage (`storage`): `sqlite:///OUT/optuna.db` by default, Optuna's journal file with `workers > 1`, any RDB URL
(e.g. PostgreSQL) for workers on several machines.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from tempbench.strategies import Strategy, get_strategy_class

from .samplers import GOALS, describe_sampler, make_pruner, make_sampler, search_distributions
from .storage import DEFAULT_HEARTBEAT, WORKER_ATTR, open_storage, quiet_experimental, resolve_storage
from .workers import (
    COUNTED,
    SURPLUS_ATTR,
    Budget,
    ProgressLine,
    SurplusTrial,
    WorkersLost,
    on_death_retry,
    run_in_processes,
)

log = logging.getLogger(__name__)

TrialFn = Callable[[str, dict, "Reporter"], "float | dict[str, Any]"]
HPARAMS_ATTR = "tempbench.hparams"  # trial user attr: {"strategy": {...}, "optim": {...}} as given to the trial_fn
GRID_ATTR = "tempbench.grid"  # study user attr: the grid a --grid study evaluates (None otherwise), checked on resume
__all__ = ["GRID_ATTR", "HPARAMS_ATTR", "WORKER_ATTR", "Reporter", "StudyJob", "open_storage", "resolve_storage",
           "run_study", "work"]


class Reporter:
    """Feeds per-epoch validation values of one trial to Optuna's pruner."""

    def __init__(self, trial: Any) -> None:
        self._trial = trial

    @property
    def trial_number(self) -> int:
        """The Optuna trial's number within its study."""
        return self._trial.number

    @property
    def study_name(self) -> str:
        """The name of the study the trial belongs to."""
        return self._trial.study.study_name

    def report(self, epoch: int, value: float) -> None:
        """Record `value` at `epoch`; raise optuna.TrialPruned if the pruner stops this trial."""
        self._trial.report(float(value), int(epoch))
        if self._trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (value {value:.4g})")


@dataclass
class StudyJob:
    """Everything a worker process needs to run its share of a study (picklable, for spawn)."""

    strategy: str
    trial_fn: TrialFn
    storage: str
    strategy_class: type[Strategy]  # resolved with the dataset's pairing: its search space is the one sampled
    study_name: str
    n_trials: int
    grid: dict[str, dict[str, list]] | None = None  # {"strategy": grid, "optim": grid}; None = no grid
    seed: int = 0
    epochs: int | None = None
    batch_size: int | None = None  # the runs' global batch: ρ ranges end below log(B − 1) (None: 512 assumed)
    direction: str = "maximize"
    goal: str = "sensitivity"
    prune: bool = False
    metric: str = "objective"
    test_metric: str | None = None
    heartbeat: int | None = DEFAULT_HEARTBEAT
    extra_space: Callable[[Any], dict] | None = None
    space: dict[str, Any] | None = None  # the search distributions (Sobol design)
    pruner: Any = None  # overrides the one `prune` chooses
    repeats: dict[int, dict] | None = None  # a repeats study: source trial number -> its params
    n_existing: int = 0  # trials before this start: shifts TPE's seed so a resume explores anew
    attrs: dict[str, Any] = field(default_factory=dict)  # what the study must hold to be resumed by this job

    @property
    def flat_grid(self) -> dict[str, list] | None:
        """The grid as one {parameter: values} table (strategy and optimiser parts merged), or None."""
        return None if self.grid is None else {k: v for part in self.grid.values() for k, v in part.items()}


def run_study(strategy: str | type[Strategy], trial_fn: TrialFn, *, n_trials: int | None, grid: bool,
              storage: str | None, study_name: str | None, out_dir: Path, seed: int = 0, epochs: int | None = None,
              workers: int = 1,
              direction: str = "maximize", extra_space: Callable[[Any], dict] | None = None,
              extra_grid: dict[str, list] | None = None, grid_values: dict[str, list] | None = None,
              pruner: Any = None, metric: str = "objective", test_metric: str | None = None,
              goal: str = "sensitivity", prune: bool = False, heartbeat: int | None = DEFAULT_HEARTBEAT) -> Any:
    """Run (or resume) the study of `strategy` until `n_trials` trials are COMPLETE or PRUNED; return the Study.

    grid: GridSampler over the strategy's `search_grid` (+ `extra_grid`), all points when `n_trials` is None;
        `grid_values` replaces the values of some grid parameters (a reduced grid). Otherwise Sobol points over
        `search_space` + `extra_space` (goal "sensitivity"), or TPE (goal "tune", which prunes by default).
    prune: MedianPruner on the reported validation values (`pruner` overrides it).
    storage: None (SQLite in `out_dir`, or a journal file there when workers > 1), `journal:PATH`, or an RDB URL.
    workers: local processes (spawned) sharing the budget; `trial_fn` and `extra_space` must then be picklable.
    metric / test_metric: the objective's name (a validation metric) and the test metric reported beside it.
    """
    job = make_job(strategy, trial_fn, n_trials=n_trials, grid=grid, storage=storage, study_name=study_name,
                   out_dir=out_dir, seed=seed, epochs=epochs, workers=workers, direction=direction,
                   extra_space=extra_space, extra_grid=extra_grid, grid_values=grid_values, pruner=pruner,
                   metric=metric, test_metric=test_metric, goal=goal, prune=prune, heartbeat=heartbeat)
    return run_job(job, workers)


def make_job(strategy: str | type[Strategy], trial_fn: TrialFn, *, n_trials: int | None, grid: bool,
             storage: str | None, study_name: str | None, out_dir: Path, workers: int = 1,
             extra_grid: dict | None = None, grid_values: dict | None = None, **options: Any) -> StudyJob:
    """The checked StudyJob of `run_study` (same arguments); bad values raise ValueError before anything runs.

    strategy: the strategy class as a run configuration resolved it (`RunConfig.strategy_class`: the class of the
    dataset's pairing, whose search space and grid the study samples), or a name for the `views` class."""
    cls = strategy if isinstance(strategy, type) else get_strategy_class(strategy)  # unknown name: ValueError
    strategy = cls.name
    _check(workers, options.get("direction", "maximize"), options.get("goal", "sensitivity"), grid)
    full_grid = _build_grid(cls, strategy, options.get("epochs"), extra_grid, grid_values) if grid else None
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if options.get("goal") == "tune" and options.get("pruner") is None:
        options["prune"] = True
    job = StudyJob(strategy, trial_fn, resolve_storage(storage, Path(out_dir), workers), cls,
                   study_name or f"{strategy}-custom", _trial_budget(n_trials, full_grid), grid=full_grid, **options)
    if full_grid is not None:
        job.extra_space = None
    elif job.goal == "sensitivity":
        job.space = search_distributions(cls.search_space, job.epochs, job.extra_space, batch_size=job.batch_size)
    job.attrs = {"strategy": strategy, "mode": "grid" if grid else job.goal, "direction": job.direction,
                 "grid": full_grid, "metric": job.metric, "test_metric": job.test_metric,
                 "sampler": describe_sampler(job.goal, grid, job.seed, job.prune or job.pruner is not None)}
    if workers > 1:
        _check_picklable(job)
    return job


def run_job(job: StudyJob, workers: int = 1) -> Any:
    """Open (or resume) the job's study, run its workers here or in `workers` processes; return the Study. A killed
    worker's trial is retried by the others at once; WorkersLost if none was left to finish the budget."""
    study = open_study(job)
    job.n_existing = len(study.trials)
    if workers == 1:
        work(job, 0)
        return load(job, worker=0)
    killed = run_in_processes(work, [(job, w) for w in range(workers)], on_death=on_death_retry(study))
    done = len(study.get_trials(deepcopy=False, states=COUNTED))
    if killed and done < job.n_trials:
        raise WorkersLost(f"study {job.study_name}: every worker ended, {len(killed)} of them killed, with {done} of "
                          f"{job.n_trials} trials done; run the same command again to resume it")
    return load(job, worker=0)


def _check(workers: int, direction: str, goal: str, grid: bool) -> None:
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {GOALS}, got {goal!r}")
    if grid and goal == "tune":
        raise ValueError("a grid is a sensitivity design; goal 'tune' searches with TPE")


def _build_grid(cls: Any, strategy: str, epochs: int | None, extra_grid: dict[str, list] | None,
                grid_values: dict[str, list] | None) -> dict:
    own = dict(cls.search_grid(epochs=epochs))
    if not own:
        raise ValueError(f"strategy {strategy!r} has no search grid (search_grid is empty); run without --grid")
    unknown = sorted(set(grid_values or {}) - set(own))
    if unknown:
        raise ValueError(f"grid values for {unknown} do not match {strategy!r}'s grid parameters {sorted(own)}")
    grid = {"strategy": {**own, **(grid_values or {})}, "optim": dict(extra_grid or {})}
    empty = sorted(name for part in grid.values() for name, values in part.items() if not values)
    if empty:
        raise ValueError(f"grid parameters {empty} of {strategy!r} have no values")
    clash = set(grid["strategy"]) & set(grid["optim"])
    if clash:
        raise ValueError(f"extra grid parameters {sorted(clash)} clash with {strategy!r}'s own")
    return grid


def _trial_budget(n_trials: int | None, grid: dict | None) -> int:
    size = math.prod(len(v) for part in grid.values() for v in part.values()) if grid is not None else None
    if n_trials is None:
        if size is None:
            raise ValueError("n_trials is required unless grid=True")
        return size
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    return min(n_trials, size) if size is not None else n_trials


def open_study(job: StudyJob) -> Any:
    """Create the study or load it to resume; refuse to mix a different strategy, mode, grid or metric into it."""
    study = optuna.create_study(storage=open_storage(job.storage, job.heartbeat), study_name=job.study_name,
                                load_if_exists=True, direction=job.direction, sampler=optuna.samplers.RandomSampler())
    checked = ("strategy", "mode", "direction", "grid", "metric")
    found = {k: study.user_attrs.get(f"tempbench.{k}") for k in checked}
    expected = {k: job.attrs[k] for k in checked}
    if found["strategy"] is None:  # a new study; workers started together may all get here and write the same
        for key, value in sorted(job.attrs.items(), key=lambda item: item[0] == "strategy"):
            study.set_user_attr(f"tempbench.{key}", value)  # "strategy" last: once it is there, all of them are
        with quiet_experimental():
            study.set_metric_names([job.metric])  # optuna-dashboard labels the value with it
    elif found != expected:
        raise ValueError(f"study {job.study_name!r} in {job.storage} holds {found}, not {expected}; pass another "
                         "study name to start a new one")
    return study


def load(job: StudyJob, worker: int) -> Any:
    """The job's study as worker `worker` sees it: its own sampler seed, so workers do not draw the same points."""
    sampler = make_sampler(job.goal, job.flat_grid, job.space, job.seed, job.seed + worker + 10_007 * job.n_existing)
    return optuna.load_study(study_name=job.study_name, storage=open_storage(job.storage, job.heartbeat),
                             sampler=sampler, pruner=job.pruner if job.pruner is not None else make_pruner(job.prune))


def _check_picklable(job: StudyJob) -> None:
    try:
        pickle.dumps(job)
    except Exception as exc:
        raise ValueError(f"with workers > 1 the trial function and extra space must be picklable (module-level "
                         f"functions or objects): {exc}") from exc


def work(job: StudyJob, worker: int) -> None:
    """One worker: run trials until the study's budget is met (Budget: Optuna's MaxTrialsCallback, see workers)."""
    study = load(job, worker)
    budget = Budget(job.n_trials)
    if budget.wait_for_slot(study):
        study.optimize(budget.guard(objective_of(job)), catch=(SurplusTrial,), gc_after_trial=False,
                       callbacks=[ProgressLine(job.n_trials, job.metric, job.test_metric), budget])


def objective_of(job: StudyJob) -> Callable[[Any], float]:
    """The Optuna objective: sample, run the trial function, keep its other metrics (test ones included) as user
    attributes; return the validation objective. NaN or inf is failed by Optuna and does not use the budget."""

    def objective(trial: Any) -> float:
        params = _sample_params(trial, job)
        trial.set_user_attr(HPARAMS_ATTR, params)
        value, metrics = _split_result(job.trial_fn(job.strategy, params, Reporter(trial)))
        for key, number in metrics.items():
            trial.set_user_attr(key, number)
        return value

    return objective


def _sample_params(trial: Any, job: StudyJob) -> dict[str, Any]:
    if job.repeats is not None:  # a repeats study: a source trial's params at another seed
        source = trial.suggest_categorical("source", sorted(job.repeats))
        return {**job.repeats[source], "seed": trial.suggest_categorical("seed", job.flat_grid["seed"])}
    if job.grid is not None:
        return {part: {name: trial.suggest_categorical(name, values) for name, values in grid.items()}
                for part, grid in job.grid.items()}
    space = job.strategy_class.search_space(trial, epochs=job.epochs, batch_size=job.batch_size)
    return {"strategy": space, "optim": job.extra_space(trial) if job.extra_space else {}}


def _split_result(result: float | dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(objective, the other JSON-friendly scalar metrics) from what a trial_fn returned."""
    if not isinstance(result, dict):
        return float(result), {}
    if "objective" not in result:
        raise ValueError(f"a trial_fn that returns a dict must give its 'objective'; got keys {sorted(result)}")
    scalars = (int, float, str, bool, type(None))
    metrics = {k: v for k, v in result.items() if k != "objective" and isinstance(v, scalars)}
    return float(result["objective"]), metrics


def counts(study: Any) -> dict[str, int]:
    """Trials by outcome: complete, pruned, failed (surplus ones left out), surplus, retried (re-runs of a trial
    whose worker died), running."""
    trials = study.get_trials(deepcopy=False)
    surplus = [t for t in trials if t.user_attrs.get(SURPLUS_ATTR)]
    return {"complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "failed": sum(t.state == TrialState.FAIL for t in trials) - len(surplus), "surplus": len(surplus),
            "retried": sum("failed_trial" in t.system_attrs for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials)}
