"""Workers of one study: any number of processes, on one machine or many, each running `Study.optimize` on the
shared storage until the study's budget is met, with exactly `n_trials` trials ending COMPLETE or PRUNED.

    budget = Budget(n_trials)
    if budget.wait_for_slot(study):
        study.optimize(budget.guard(objective), callbacks=[budget, ProgressLine(n_trials, metric)],
                       catch=(SurplusTrial,))

The stop is Optuna's `MaxTrialsCallback` over (COMPLETE, PRUNED). Two things it cannot do are added. Measured
alone (3 processes started together on PostgreSQL, 1 s trials, budget 6, three runs) it ended with 7, 8 and 6
complete trials: every worker still running when the 6th finished completes its own. And nothing in it makes the
last workers wait for a killed worker's trial to go stale, so that trial would be lost when they stop first:
- `wait_for_slot`: a worker whose remaining budget is held by other workers' RUNNING trials waits for them (calling
  `fail_stale`, so a dead worker's trial is failed and re-queued, and this worker runs the retry) instead of
  starting a trial beyond the budget;
- `guard`: a trial that finds, once Optuna has created it, that trials before it already hold the whole budget
  (two workers asked at the same instant) or its grid point, is not run: it ends FAIL at once, tagged
  `tempbench.surplus`, and counts nowhere. Optuna's `ask` cannot refuse to create a trial, so this is the one place
  a race can be settled.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from .storage import WORKER_ATTR, fail_stale, worker_id

log = logging.getLogger("tempbench.sensitivity")

SURPLUS_ATTR = "tempbench.surplus"
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # what the budget counts: a pruned trial still has a value
HELD = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)  # counted or about to be
POLL_S = 1.0  # how often a waiting worker looks at the study again


class SurplusTrial(Exception):
    """A trial created beyond the budget (or on a grid point another trial holds): not run, not counted."""


class Budget:
    """Stops a worker once `n_trials` trials of the study are COMPLETE or PRUNED (Optuna's MaxTrialsCallback);
    waits while the rest of the budget is held by other workers' trials; settles races in `guard`."""

    def __init__(self, n_trials: int, max_failures: int | None = None) -> None:
        self.n_trials = n_trials
        self._stop = MaxTrialsCallback(n_trials, states=COUNTED)
        self._max_failures = max_failures if max_failures is not None else n_trials
        self._failures = 0

    def __call__(self, study: Any, trial: Any) -> None:
        """After every trial: stop when the budget is met, or when this worker failed too many trials (a
        trial function that returns NaN every time must not loop forever)."""
        self._failures += trial.state == TrialState.FAIL and not trial.user_attrs.get(SURPLUS_ATTR)
        if self._failures >= self._max_failures:
            log.warning("%s: %d trials of this worker failed; it stops", study.study_name, self._failures)
            study.stop()
            return
        self._stop(study, trial)  # Optuna's stop at the budget; wait_for_slot below returns False in that case too
        if not self.wait_for_slot(study):
            study.stop()

    def wait_for_slot(self, study: Any) -> bool:
        """Block until a trial may start (True) or the budget is met (False)."""
        told = False
        while True:
            fail_stale(study)
            trials = study.get_trials(deepcopy=False, states=HELD)
            counted = sum(t.state in COUNTED for t in trials)
            if counted >= self.n_trials:
                return False
            if len(trials) < self.n_trials or any(t.state == TrialState.WAITING for t in trials):
                return True
            if not told:
                running = [t.number for t in trials if t.state == TrialState.RUNNING]
                print(f"{study.study_name}: the rest of the budget is running elsewhere (trials {running}); waiting "
                      "for them to finish, or to be re-queued if their worker died", file=sys.stderr, flush=True)
                told = True
            time.sleep(POLL_S)  # the rest is RUNNING elsewhere: it finishes, or its worker dies and it is retried

    def guard(self, objective: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """`objective`, run only when its trial is within the budget; a surplus trial raises SurplusTrial."""

        def guarded(trial: Any) -> Any:
            trial.set_user_attr(WORKER_ATTR, worker_id())
            reason = self.surplus_reason(trial)
            if reason:
                trial.set_user_attr(SURPLUS_ATTR, True)
                raise SurplusTrial(f"trial {trial.number} not run: {reason}")
            return objective(trial)

        return guarded

    def surplus_reason(self, trial: Any) -> str:
        """Why `trial` must not run ("" when it may): the trials numbered before it hold the budget or its grid
        point. Trial numbers are assigned by the storage in order, so every worker agrees on who came first."""
        earlier = [t for t in trial.study.get_trials(deepcopy=False, states=HELD) if t.number < trial.number]
        if len(earlier) >= self.n_trials:
            return f"the {self.n_trials} trials of the budget are taken"
        # GridSampler stores each trial's point as the "grid_id" system attr, picked at random among the unvisited
        # ones, so simultaneous workers can collide; a live Trial does not expose system attrs: ask the storage
        grid_id = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("grid_id")
        if grid_id is not None and any(t.system_attrs.get("grid_id") == grid_id for t in earlier):
            return f"grid point {grid_id} is taken by an earlier trial"
        return ""


class ProgressLine:
    """One line per finished trial on stderr: number, validation value, test value, hyperparameters, ETA (mean
    trial time × trials left ÷ trials running now)."""

    def __init__(self, n_trials: int, metric: str, test_metric: str | None) -> None:
        self.n_trials, self.metric, self.test_metric = n_trials, metric, test_metric

    def __call__(self, study: Any, trial: Any) -> None:
        if trial.user_attrs.get(SURPLUS_ATTR):
            return
        print(f"{study.study_name} {self.line(study, trial)}", file=sys.stderr, flush=True)

    def line(self, study: Any, trial: Any) -> str:
        """`trial N state (done/n_trials): METRIC value, test TEST value; params; ETA ...` for a finished trial."""
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state in COUNTED]
        running = sum(t.state == TrialState.RUNNING for t in trials)
        test = trial.user_attrs.get(self.test_metric) if self.test_metric else None
        params = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        return (f"trial {trial.number} {trial.state.name.lower()} ({len(done)}/{self.n_trials}): {self.metric} "
                f"{_short(trial.value)}, test {self.test_metric or '-'} {_short(test)}; {params}; "
                f"ETA {_eta(done, self.n_trials, running)}")


def _eta(done: Sequence[Any], n_trials: int, running: int) -> str:
    seconds = [t.duration.total_seconds() for t in done if t.duration is not None]
    left = max(n_trials - len(done), 0)
    if not seconds or not left:
        return "-" if left else "done"
    eta = sum(seconds) / len(seconds) * left / max(running, 1)  # the running trials approximate the parallelism
    return f"{eta / 60:.1f} min" if eta >= 90 else f"{eta:.0f} s"


def _short(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_in_processes(target: Callable[..., Any], jobs: Sequence[tuple]) -> None:
    """Run `target(*job)` for each job in its own spawned process and wait for all; a worker that fails (exit code
    != 0) is an error once all have ended. Ctrl-C reaches the workers too (one process group): each fails its
    running trial and exits, and the interrupt is re-raised here."""
    context = multiprocessing.get_context("spawn")  # fork would copy torch's threads and locks into the child
    processes = [context.Process(target=_quiet_on_interrupt, args=(target, job), daemon=False) for job in jobs]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            process.join(timeout=30)
        raise
    failed = [(i, p.exitcode) for i, p in enumerate(processes) if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"worker processes failed (worker, exit code): {failed}; their errors are above")


def _quiet_on_interrupt(target: Callable[..., Any], job: tuple) -> None:
    """A worker's body: Ctrl-C ends it with exit code 130 without a second traceback (Optuna has already failed
    its running trial)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        target(*job)
    except KeyboardInterrupt:
        sys.exit(130)
