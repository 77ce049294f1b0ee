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
  (two workers asked at the same instant) or its grid or Sobol point, is not run: it ends FAIL at once, tagged
  `tempbench.surplus`, and counts nowhere. Optuna's `ask` cannot refuse to create a trial, so this is the one place
  a race can be settled. It also tags a trial that fails by itself (`tempbench.failed`: an error, a NaN), so that
  one is told apart from a trial whose worker was killed, whose design point is still to be evaluated.

Local workers (`run_in_processes`) are reaped as they end, in any order: a worker killed by a signal is reported in
one line, its trial is failed and queued for another worker at once (`on_death`), and the others finish the budget.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from tempbench.util import WorkersLost

from .samplers import POINT_ATTR, held_point
from .storage import (
    FAILED_ATTR,
    INTERRUPTED,
    MAX_RETRY,
    SURPLUS_ATTR,
    WORKER_ATTR,
    awaiting_retry,
    died,
    fail_stale,
    fail_trials_of,
    retries_left,
    worker_id,
)

log = logging.getLogger("tempbench.sensitivity")

__all__ = ["SURPLUS_ATTR", "Budget", "ProgressLine", "SurplusTrial", "WorkersLost", "on_death_retry",
           "run_in_processes"]  # SURPLUS_ATTR: kept here too, where the report has always imported it from

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # what the budget counts: a pruned trial still has a value
HELD = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)  # counted or about to be
POLL_S = 1.0  # how often a waiting worker looks at the study again


class SurplusTrial(Exception):
    """A trial created beyond the budget (or on a grid or design point another trial holds): not run, not
    counted."""


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
            everything = study.get_trials(deepcopy=False)
            trials = [t for t in everything if t.state in HELD]
            counted = sum(t.state in COUNTED for t in trials)
            if counted >= self.n_trials:
                return False
            if any(t.state == TrialState.WAITING for t in trials):
                return True
            if len(trials) < self.n_trials and not awaiting_retry(everything):  # else its retry comes in a moment
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
            return _tag_failure(objective, trial)

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
        # a retry's Sobol point (a new trial draws its point later, from the points earlier trials leave free)
        point = trial.user_attrs.get(POINT_ATTR)
        if point is not None and any(held_point(t) == point for t in trial.study.get_trials(deepcopy=False)
                                     if t.number < trial.number):
            return f"design point {point} is taken by an earlier trial"
        return ""


def _tag_failure(objective: Callable[[Any], Any], trial: Any) -> Any:
    """`objective(trial)`, with the reason recorded (FAILED_ATTR) when it fails by itself: an error, a value that
    is not finite (Optuna fails the trial), or Ctrl-C."""
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        raise
    except KeyboardInterrupt:
        trial.set_user_attr(FAILED_ATTR, INTERRUPTED)
        raise
    except Exception as exc:
        trial.set_user_attr(FAILED_ATTR, f"{type(exc).__name__}: {exc}"[:300])
        raise
    if isinstance(value, (int, float)) and not math.isfinite(value):
        trial.set_user_attr(FAILED_ATTR, f"objective {value}")
    return value


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


def run_in_processes(target: Callable[..., Any], jobs: Sequence[tuple],
                     on_death: Callable[[int], str] | None = None) -> list[int]:
    """Run `target(*job)` for each job in its own spawned process and wait for all; return the workers (0-based)
    that were killed by a signal. Each ended worker is reaped at once, in whatever order they end: an unreaped
    zombie would pass for alive in the others' liveness check. A killed worker is reported in one line with what
    `on_death(pid)` did about its work (e.g. retried its trial); without `on_death` it is an error once all have
    ended, like a worker that failed (exit code > 0). Ctrl-C reaches the workers too (one process group): each
    fails its running trial and exits, and the interrupt is re-raised here."""
    context = multiprocessing.get_context("spawn")  # fork would copy torch's threads and locks into the child
    # the parent's warning format travels with the job (spawned workers start from Python's two-line default)
    processes = [context.Process(target=_quiet_on_interrupt, args=(target, job, warnings.formatwarning),
                                 daemon=False) for job in jobs]
    for process in processes:
        process.start()
    try:
        killed, failed = _reap(processes, on_death)
    except KeyboardInterrupt:
        for process in processes:
            process.join(timeout=30)
        raise
    if failed:
        raise RuntimeError(f"worker processes failed (worker, exit code): {failed}; their errors are above")
    return killed


def _reap(processes: list[Any], on_death: Callable[[int], str] | None) -> tuple[list[int], list[tuple[int, int]]]:
    """Wait for every process, each handled the moment it ends; (killed workers, [(failed worker, exit code)])."""
    waiting = {process.sentinel: index for index, process in enumerate(processes)}
    killed, failed = [], []
    while waiting:
        for sentinel in multiprocessing.connection.wait(list(waiting)):
            index = waiting.pop(sentinel)
            process = processes[index]
            process.join()  # reaps it
            code = process.exitcode
            if code == 0:
                continue
            if code < 0 and on_death is not None:
                print(f"worker {index + 1} (pid {process.pid}) was killed ({_signal_name(-code)}); "
                      f"{_handle_death(on_death, process.pid)}", file=sys.stderr, flush=True)
                killed.append(index)
            else:
                failed.append((index, code))
    return killed, failed


def _handle_death(on_death: Callable[[int], str], pid: int) -> str:
    """What `on_death(pid)` did; if it failed (say the storage did not answer), the others' own look at the study
    still fails and retries the dead worker's trial, and the workers left must not be abandoned for it."""
    try:
        return on_death(pid)
    except Exception as exc:
        return f"its trial is left to the other workers to retry ({type(exc).__name__}: {exc})"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def on_death_retry(study: Any) -> Callable[[int], str]:
    """An `on_death` for `run_in_processes`: fail the dead worker's RUNNING trial of `study` and queue its retry (at
    once, not when another worker next looks), and say so: "its trial 3 of STUDY is retried"."""

    def on_death(pid: int) -> str:
        fail_trials_of(study, pid)
        owner = f"{socket.gethostname()}:{pid}"
        lost = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(WORKER_ATTR) == owner and died(t)]
        if not lost:
            return f"it was running no trial of {study.study_name}"
        return "; ".join(f"its trial {t.number} of {study.study_name} is " +
                         ("retried" if retries_left(t) else f"not retried again ({MAX_RETRY} retries used)")
                         for t in lost)

    return on_death


def _quiet_on_interrupt(target: Callable[..., Any], job: tuple,
                        formatwarning: Callable[..., str] = warnings.formatwarning) -> None:
    """A worker's body: warnings in the parent's format (the CLI's one line each); Ctrl-C ends it with exit code 130
    without a second traceback (Optuna has already failed its running trial)."""
    warnings.formatwarning = formatwarning
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        target(*job)
    except KeyboardInterrupt:
        sys.exit(130)
