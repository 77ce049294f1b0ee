"""Where a study lives: Optuna storage specs (SQLite, journal file, any RDB URL such as PostgreSQL), and how trials
of a worker that died are found and handed to another worker.

    spec = resolve_storage("postgresql://bench@db/optuna", out_dir)   # -> postgresql+psycopg://bench@db/optuna
    storage = open_storage(spec, heartbeat=60)                         # RDBStorage with heartbeats and retries
    fail_stale(study)                                                  # FAIL dead workers' trials, queue retries

Dead workers: an RDB storage records a heartbeat of every RUNNING trial (Optuna's `heartbeat_interval`); a trial
whose heartbeat is older than the grace period is failed by `optuna.storages.fail_stale_trials` and re-queued once
per failure (up to `MAX_RETRY` times) by `RetryHeartbeatStaleTrialCallback`, so another worker re-runs it. Optuna's
journal storage has no heartbeat (Optuna 5.0: `JournalStorage` does not implement `BaseHeartbeat`); its workers all
run on this machine, so there a trial whose worker process (`tempbench.worker` = host:pid) is gone is failed and
re-queued the same way.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import re
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tempbench.util import MissingExtra

log = logging.getLogger("tempbench.sensitivity")

WORKER_ATTR = "tempbench.worker"  # trial user attr: "host:pid" of the process that ran it
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
    """Optuna's callback that re-queues a failed stale trial (same params) up to MAX_RETRY times."""
    with quiet_experimental():
        return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


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
    host, retry = socket.gethostname(), retry_callback()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner_host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
        if owner_host == host and pid.isdigit() and not alive(int(pid)):
            log.warning("%s trial %d was left RUNNING by a dead worker (%s); marking it FAIL and queueing a retry",
                        study.study_name, trial.number, trial.user_attrs[WORKER_ATTR])
            study.tell(trial.number, state=TrialState.FAIL)
            retry(study, study.get_trials(deepcopy=False)[trial.number])


def alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def redact(url: str) -> str:
    """`url` with any password replaced by ***, for reports and tracking (postgresql://user:secret@host/db)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def worker_id() -> str:
    """"host:pid" of this process: what `WORKER_ATTR` records on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"
