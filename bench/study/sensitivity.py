"""Hyperparameter-sensitivity studies: one Optuna study per (strategy, dataset) over the strategy's own search space,
with the training injected as a `TrialFn`, so the machinery runs and is tested without the runner.

    def trial_fn(strategy: str, params: dict, reporter: Reporter) -> float | dict:
        ...  # params = {"strategy": {kwargs for create_strategy}, "optim": {extra, e.g. lr}}
        reporter.report(epoch, knn_acc)       # raises optuna.TrialPruned when the MedianPruner says so
        return {"objective": final_acc, "linear_top1": ...}

    study = run_study("isogclr", trial_fn, n_trials=40, grid=False, storage=None, study_name="isogclr-cifar10",
                      out_dir=Path("runs/sens"))
    # then tempbench.sensitivity_report: write_report({"isogclr": summarize_study(study)}, {"isogclr": study}, out)

Storage: `sqlite:///OUT/optuna.db` by default; Optuna's journal file `OUT/optuna-journal.log` with `workers > 1` (or
`journal:PATH`); any RDB URL (e.g. PostgreSQL) for workers on several machines running the same command. Exactly
`n_trials` trials end COMPLETE or PRUNED in total: workers reserve a trial under a file lock before asking Optuna for
one, and re-running a command resumes its study. Trials of a killed local worker are marked FAIL on the next start.
"""

from __future__ import annotations

import functools
import logging
import math
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileOpenLock
from optuna.trial import TrialState

from tempbench.strategies import get_strategy_class

from .storage import (  # storage names are re-exported: callers import them from here
    WORKER_ATTR,
    fail_dead_trials,
    lock_path,
    open_storage,
    resolve_storage,
    worker_id,
)

log = logging.getLogger(__name__)

TrialFn = Callable[[str, dict, "Reporter"], "float | dict[str, Any]"]
HPARAMS_ATTR = "tempbench.hparams"  # trial user attr: {"strategy": {...}, "optim": {...}} as given to the trial_fn
GRID_ATTR = "tempbench.grid"  # study user attr: the grid a --grid study evaluates (None for TPE), checked on resume


class Reporter:
    """Feeds per-epoch values of one trial to Optuna's pruner."""

    def __init__(self, trial: Any) -> None:
        self._trial = trial

    @property
    def trial_number(self) -> int:
        return self._trial.number

    @property
    def study_name(self) -> str:
        return self._trial.study.study_name

    def report(self, epoch: int, value: float) -> None:
        """Record `value` at `epoch`; raise optuna.TrialPruned if the pruner stops this trial."""

        self._trial.report(float(value), int(epoch))
        if self._trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (value {value:.4g})")


@dataclass
class _StudyJob:
    """Everything a worker process needs to run its share of a study (picklable, for spawn)."""

    strategy: str
    trial_fn: TrialFn
    storage: str
    study_name: str
    n_trials: int
    grid: dict[str, dict[str, list]] | None  # {"strategy": grid, "optim": grid}, or None for TPE
    seed: int
    epochs: int | None
    direction: str
    lock_path: str
    extra_space: Callable[[Any], dict] | None = None
    pruner: Any = None
    n_existing: int = 0  # trials in the study before this start: shifts the sampler seed so a resume explores anew

    @property
    def mode(self) -> str:
        return "grid" if self.grid is not None else "tpe"


def run_study(strategy: str, trial_fn: TrialFn, *, n_trials: int | None, grid: bool, storage: str | None,
              study_name: str | None, out_dir: Path, seed: int = 0, epochs: int | None = None, workers: int = 1,
              direction: str = "maximize", extra_space: Callable[[Any], dict] | None = None,
              extra_grid: dict[str, list] | None = None, grid_values: dict[str, list] | None = None,
              pruner: Any = None, metric: str = "objective") -> Any:
    """Run (or resume) the study of `strategy` until `n_trials` trials are COMPLETE or PRUNED; return the Study.

    grid: GridSampler over the strategy's `search_grid` (+ `extra_grid`; `extra_space` is not used), all points when
        `n_trials` is None, else the first `n_trials`; no pruning unless `pruner` is given. `grid_values` replaces
        the values of some of the strategy's grid parameters (a reduced grid). Otherwise a seeded TPE
        over `search_space` + `extra_space` with a MedianPruner fed by `Reporter.report`.
    storage: None (SQLite in `out_dir`, or a journal file there when workers > 1), `journal:PATH`, or an RDB URL.
    workers: local processes (spawned) sharing the budget; `trial_fn` and `extra_space` must then be picklable.
    metric: the objective's name, for the report.
    """

    cls = get_strategy_class(strategy)  # unknown name -> ValueError listing the registered ones
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    full_grid = _build_grid(cls, strategy, epochs, extra_grid, grid_values) if grid else None
    n_trials = _trial_budget(n_trials, full_grid)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = resolve_storage(storage, out_dir, workers)
    job = _StudyJob(strategy, trial_fn, spec, study_name or f"{strategy}-custom", n_trials, full_grid, seed, epochs,
                    direction, str(lock_path(spec, out_dir)), None if grid else extra_space, pruner)
    if workers > 1:
        _check_picklable(job)
    study = _open_study(job, metric)
    fail_dead_trials(study)
    job.n_existing = len(study.trials)
    if workers == 1:
        _work(job, 0)
    else:
        _work_in_processes(job, workers)
    return _load_study(job, worker=0)


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


def _open_study(job: _StudyJob, metric: str) -> Any:
    """Create the study or load it to resume; refuse to mix a different strategy, mode or direction into it."""

    study = optuna.create_study(storage=open_storage(job.storage), study_name=job.study_name, load_if_exists=True,
                                direction=job.direction, sampler=_make_sampler(job, worker=0))
    # The grid too: resuming with other grid values would mix two designs in one report.
    expected = {"strategy": job.strategy, "mode": job.mode, "direction": job.direction, "grid": job.grid}
    found = {k: study.user_attrs.get(f"tempbench.{k}") for k in expected}
    if found["strategy"] is None:
        for key, value in {**expected, "metric": metric}.items():
            study.set_user_attr(f"tempbench.{key}", value)
    elif found != expected:
        raise ValueError(f"study {job.study_name!r} in {job.storage} holds {found}, not {expected}; "
                         "pass another study name to start a new one")
    return study


def _load_study(job: _StudyJob, worker: int) -> Any:

    return optuna.load_study(study_name=job.study_name, storage=open_storage(job.storage),
                             sampler=_make_sampler(job, worker), pruner=_make_pruner(job))


def _make_sampler(job: _StudyJob, worker: int) -> Any:

    # Distinct seeds per worker and per restart, else each would replay the same random start-up points.
    seed = job.seed + worker + 10_007 * job.n_existing
    if job.grid is None:
        return optuna.samplers.TPESampler(seed=seed)
    return _budget_grid_sampler_class()({**job.grid["strategy"], **job.grid["optim"]}, seed=seed)


def _make_pruner(job: _StudyJob) -> Any:

    if job.pruner is not None:
        return job.pruner
    if job.grid is not None:
        return optuna.pruners.NopPruner()  # a grid is there to draw whole curves
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)  # epoch 0 is mostly noise


@functools.cache
def _budget_grid_sampler_class() -> type:

    class BudgetGridSampler(optuna.samplers.GridSampler):
        """GridSampler that leaves stopping to the worker's trial budget: its own `study.stop()` raises outside
        `Study.optimize`, and workers here drive trials by ask/tell."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

    return BudgetGridSampler


def _check_picklable(job: _StudyJob) -> None:
    try:
        pickle.dumps(job)
    except Exception as exc:
        raise ValueError(f"with workers > 1 the trial function and extra space must be picklable (module-level "
                         f"functions or objects): {exc}") from exc


def _work_in_processes(job: _StudyJob, workers: int) -> None:
    """Run `workers` spawned processes on the shared storage; re-raise the first worker error."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_work, job, w) for w in range(workers)]
        for future in futures:
            future.result()


def _work(job: _StudyJob, worker: int) -> int:
    """One worker: reserve and run trials until the study's budget is met; return how many this worker ran."""

    study = _load_study(job, worker)
    lock = JournalFileOpenLock(job.lock_path)
    ran = failed = 0
    while failed < job.n_trials:  # a trial_fn that returns NaN every time must not loop forever
        trial = _reserve_trial(study, job.n_trials, lock)
        if trial is None:
            break
        ran += 1
        failed += _run_trial(study, trial, job) == TrialState.FAIL
    return ran


def _reserve_trial(study: Any, n_trials: int, lock: Any) -> Any:
    """A new RUNNING trial if the budget (COMPLETE + PRUNED + RUNNING < n_trials) allows one, else None."""

    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    lock.acquire()
    try:
        if len(study.get_trials(deepcopy=False, states=counted)) >= n_trials:
            return None
        trial = study.ask()
        trial.set_user_attr(WORKER_ATTR, worker_id())
    finally:
        lock.release()
    # Workers on other machines do not share the lock: the later of two racing trials backs out.
    earlier = [t for t in study.get_trials(deepcopy=False, states=counted) if t.number < trial.number]
    if len(earlier) >= n_trials:
        trial.set_user_attr("tempbench.surplus", True)
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


def _run_trial(study: Any, trial: Any, job: _StudyJob) -> Any:
    """Sample, run `job.trial_fn`, tell Optuna the outcome; return the final TrialState."""

    try:
        params = _sample_params(trial, job)
        trial.set_user_attr(HPARAMS_ATTR, params)
        result = job.trial_fn(job.strategy, params, Reporter(trial))
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
        log.info("%s trial %d pruned", job.study_name, trial.number)
        return TrialState.PRUNED
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)  # recorded, then the error stops the study loudly
        raise
    objective, metrics = _split_result(result)
    for key, value in metrics.items():
        trial.set_user_attr(key, value)
    if not math.isfinite(objective):
        log.warning("%s trial %d returned %s; marked FAIL (does not count towards the budget)",
                    job.study_name, trial.number, objective)
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    study.tell(trial, objective)
    log.info("%s trial %d: %.4g with %s", job.study_name, trial.number, objective, params)
    return TrialState.COMPLETE


def _sample_params(trial: Any, job: _StudyJob) -> dict[str, dict[str, Any]]:

    if job.grid is not None:
        return {part: {name: trial.suggest_categorical(name, values) for name, values in grid.items()}
                for part, grid in job.grid.items()}
    space = get_strategy_class(job.strategy).search_space(trial, epochs=job.epochs)
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
