"""Where a study lives: Optuna storage specs (SQLite, journal file, any RDB URL such as PostgreSQL), and how trials
of a worker that died are found and handed to another worker.

    spec = resolve_storage("postgresql://bench@db/optuna", out_dir)   # -> postgresql+psycopg://bench@db/optuna
    storage = open_storage(spec, heartbeat=60)                         # RDBStorage with heartbeats and retries
    fail_stale(study)                                                  # FAIL dead workers' trials, queue retries

Dead workers: an RDB storage records a heartbeat of every RUNNING trial (Optuna's `heartbeat_interval`); a trial
whose heartbeat is older than the grace period is failed by `optuna.storages.fail_stale_trials` and re-queued once
per failure (up to `MAX_RETRY` times) by `RetryHeartbeatStaleTrialCallback`, so another worker re-runs it. Optuna's
journal storage has no heartbeat (Optuna 5.0: `JournalStorage` does not implement `BaseHeartbeat`); its workers all
run on this machine, so there a trial whose worker process (`tempbench.worker` = host:pid) is gone (or a zombie) is
failed and re-queued the same way. The parent of local workers (`--workers N`) does it the moment one of them ends,
on any storage (`fail_trials_of`).

A retry re-runs its trial's design point (params and `tempbench.point` are copied); it does not inherit the dead
worker's `tempbench.worker`, which would make it look dead too until its new worker records itself.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import logging
import os
import re
import socket
import time
import warnings
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tempbench.util import MissingExtra

log = logging.getLogger("tempbench.sensitivity")

WORKER_ATTR = "tempbench.worker"  # trial user attr: "host:pid" of the process that ran it
SURPLUS_ATTR = "tempbench.surplus"  # trial user attr: created beyond the budget or on a taken point; never run
FAILED_ATTR = "tempbench.failed"  # trial user attr: why its objective failed by itself (its worker lived on)
INTERRUPTED = "interrupted"  # FAILED_ATTR of a trial stopped by Ctrl-C: its point is run again on resume
ORPHAN_S = 30.0  # a RUNNING journal trial that names no worker after this long was left by a worker killed in `ask`
RETRY_GRACE_S = 10.0  # how long a dead worker's failed trial may wait for the retry its failer is queueing
DEFAULT_HEARTBEAT = 60  # seconds between heartbeats of a RUNNING trial; stale after GRACE_FACTOR of them
GRACE_FACTOR = 2
MAX_RETRY = 2  # re-runs of a trial whose worker died, before it stays FAIL
CREATE_ATTEMPTS = 5  # workers started together race to create Optuna's schema in a fresh database
# SQLAlchemy dialect name -> the drivers it can use, preferred first (psycopg 3 is SQLAlchemy 2.1's default)
DRIVERS = {"postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
           "mysql": (("pymysql", "pymysql"), ("mysqldb", "MySQLdb"))}


def resolve_storage(storage: str | None, out_dir: Path, workers: int = 1) -> str:
    """The storage spec: an RDB URL (with its driver named) or `journal:PATH`. Raises ValueError for anything else."""
    if storage is None:
        if workers > 1:  # SQLite locks up under several writers; the journal file is made for that
            return f"journal:{(out_dir / 'optuna-journal.log').resolve()}"
        return f"sqlite:///{(out_dir / 'optuna.db').resolve()}"
    if storage.startswith("journal:") or (storage.endswith(".log") and "://" not in storage):
        return f"journal:{Path(storage.removeprefix('journal:')).resolve()}"
    if "://" not in storage:
        raise ValueError(f"bad Optuna storage {storage!r}: expected an RDB URL (sqlite:///PATH, "
                         "postgresql://USER@HOST/DB, mysql://...) or journal:PATH")
    return with_driver(storage)


def with_driver(url: str) -> str:
    """`postgresql://...` (or `mysql://...`) with the installed driver named (`postgresql+psycopg://...`), so the URL
    works whichever driver SQLAlchemy would default to. No driver installed: `MissingExtra` for PostgreSQL (the
    `servers` extra installs psycopg), ValueError naming a driver for MySQL (no extra installs one)."""
    scheme, sep, rest = url.partition("://")
    if scheme not in DRIVERS:
        return url  # sqlite, or a dialect with its driver named already
    for driver, module in DRIVERS[scheme]:
        if importlib.util.find_spec(module) is not None:
            return f"{scheme}+{driver}{sep}{rest}"
    raise missing_driver(scheme)


def missing_driver(dialect: str) -> Exception:
    """The error for an RDB URL of `dialect` ("postgresql", "mysql") whose database driver is not installed."""
    if dialect.startswith("postgresql"):
        return MissingExtra("PostgreSQL storage", "servers", missing="psycopg", verb="needs")
    names = " or ".join(module for _, module in DRIVERS[dialect])
    return ValueError(f"storage {dialect}:// needs a driver ({names}): pip install {DRIVERS[dialect][0][1]}")


@functools.cache
def open_storage(spec: str, heartbeat: int | None = DEFAULT_HEARTBEAT) -> Any:
    """The Optuna storage for `spec`: a journal file, or an RDBStorage that records heartbeats every `heartbeat`
    seconds (None: off) and re-queues trials whose worker died. Failures become a ValueError saying what failed, a
    missing PostgreSQL driver a `MissingExtra`. One per process and spec (cached): each RDBStorage holds a
    connection pool."""
    try:
        if spec.startswith("journal:"):
            return optuna.storages.JournalStorage(JournalFileBackend(spec.removeprefix("journal:")))
        return _create_rdb(spec, heartbeat)
    except ValueError:
        raise
    except Exception as exc:
        if isinstance(exc, ImportError) and spec.startswith("postgresql"):  # e.g. postgresql+psycopg:// without it
            raise missing_driver("postgresql") from exc
        raise ValueError(f"cannot open Optuna storage {spec!r}: {type(exc).__name__}: {exc}") from exc


def _create_rdb(url: str, heartbeat: int | None) -> RDBStorage:
    """RDBStorage, retried when another worker is creating Optuna's tables at the same moment: PostgreSQL then
    refuses the second `CREATE TYPE`/`CREATE TABLE` (UniqueViolation, an IntegrityError) or the version row."""
    for attempt in range(CREATE_ATTEMPTS):
        try:
            with quiet_experimental():
                return RDBStorage(url, heartbeat_interval=heartbeat,
                                  grace_period=heartbeat * GRACE_FACTOR if heartbeat else None,
                                  heartbeat_stale_trial_callback=retry_callback())
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            if attempt + 1 == CREATE_ATTEMPTS:
                raise
            log.info("storage schema being created by another worker (%s); retrying", type(exc.orig).__name__)
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    """Optuna's callback that re-queues a failed stale trial (same params, same design point) up to MAX_RETRY
    times, without the dead worker's name."""
    with quiet_experimental():
        return _Retry(max_retry=MAX_RETRY)


class _Retry(RetryHeartbeatStaleTrialCallback):
    def __call__(self, study: Any, trial: Any) -> None:
        trial = copy.deepcopy(trial)
        trial.user_attrs.pop(WORKER_ATTR, None)  # the retry's worker records itself; until then it names no one
        super().__call__(study, trial)


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Optuna warns on every use of what it marks experimental (heartbeats, QMCSampler, metric names); those are
    parts this project chose and tests, so the warning is noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def fail_stale(study: Any) -> None:
    """FAIL the RUNNING trials whose worker died and queue their retries: by heartbeat on an RDB storage (Optuna's
    `fail_stale_trials`, a no-op without heartbeats), by the worker's process id on a journal file (all its workers
    run on this machine)."""
    with quiet_experimental():
        optuna.storages.fail_stale_trials(study)
    if isinstance(study._storage, optuna.storages.JournalStorage):  # an RDBStorage is wrapped in Optuna's cache
        _fail_dead_local_trials(study)


def _fail_dead_local_trials(study: Any) -> None:
    host = socket.gethostname()
    for number in fail_and_retry(study, [t for t in _running(study) if _dead_here(t, host)]):
        log.warning("%s trial %d was left RUNNING by a dead worker (%s); marking it FAIL and queueing a retry",
                    study.study_name, number, study.trials[number].user_attrs.get(WORKER_ATTR, "not recorded"))


def fail_trials_of(study: Any, pid: int) -> list[int]:
    """FAIL the RUNNING trials of local worker process `pid`, which has ended, and queue their retries; the numbers
    of the trials this call failed (none when another process did it first)."""
    owner = f"{socket.gethostname()}:{pid}"
    return fail_and_retry(study, [t for t in _running(study) if t.user_attrs.get(WORKER_ATTR) == owner])


def fail_and_retry(study: Any, trials: Iterable[Any]) -> list[int]:
    """FAIL each RUNNING trial of `trials` and queue its retry. The storage settles two processes failing the same
    trial at once (the second gets UpdateFinishedTrialError), so each trial gets one retry."""
    failed = []
    for trial in trials:
        try:
            if not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another process failed it first, and queues its retry
        retry_callback()(study, study._storage.get_trial(trial._trial_id))
        failed.append(trial.number)
    return failed


def _running(study: Any) -> list[Any]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def _dead_here(trial: Any, host: str) -> bool:
    """Whether `trial` (RUNNING) was left by a worker process of this machine that is gone."""
    owner = trial.user_attrs.get(WORKER_ATTR)
    if owner is None:  # its worker died between creating it and recording itself (a few milliseconds)
        return trial.datetime_start is not None and seconds_since(trial.datetime_start) > ORPHAN_S
    owner_host, _, pid = str(owner).rpartition(":")
    return owner_host == host and pid.isdigit() and not alive(int(pid))


def alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine and is not a zombie: signal 0 succeeds on a zombie, a process
    that ended but that its parent has not reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or it just went: signal 0 is all there is
        return False
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])  # the state follows "(command name)"


def died(trial: Any) -> bool:
    """Whether `trial` failed from outside, its worker killed or interrupted, rather than by its own error or value:
    its design point is still to be evaluated."""
    if trial.state != TrialState.FAIL or trial.user_attrs.get(SURPLUS_ATTR):
        return False
    reason = trial.user_attrs.get(FAILED_ATTR)
    return reason is None or reason == INTERRUPTED


def retries_left(trial: Any) -> bool:
    """Whether a dead worker's `trial` gets a retry (Optuna's `retry_history` holds the trials before it)."""
    return len(trial.system_attrs.get("retry_history", [])) < MAX_RETRY


def awaiting_retry(trials: list[Any]) -> list[int]:
    """The trials that a dead worker left and another process failed just now (RETRY_GRACE_S) whose retry is not
    queued yet: the failer queues it right after failing it, and it, not a new trial, should take the point."""
    retried = {t.system_attrs["retry_history"][-1] for t in trials if t.system_attrs.get("retry_history")}
    return [t.number for t in trials if died(t) and FAILED_ATTR not in t.user_attrs and retries_left(t)
            and t.number not in retried and seconds_since(t.datetime_complete) < RETRY_GRACE_S]


def seconds_since(moment: datetime | None) -> float:
    """Seconds from `moment` (Optuna's naive local time) to now; infinite for None."""
    return (datetime.now() - moment).total_seconds() if moment is not None else float("inf")


def redact(url: str) -> str:
    """`url` with any password replaced by ***, for reports and tracking (postgresql://user:secret@host/db)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def worker_id() -> str:
    """"host:pid" of this process: what `WORKER_ATTR` records on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"
