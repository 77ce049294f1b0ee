"""Where a study lives: Optuna storage specs (SQLite, journal file, any RDB URL), the per-storage budget lock, and the
bookkeeping that finds trials a killed worker left RUNNING."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

log = logging.getLogger("tempbench.sensitivity")

WORKER_ATTR = "tempbench.worker"  # trial user attr: "host:pid" of the process running it (finds killed workers)


def resolve_storage(storage: str | None, out_dir: Path, workers: int = 1) -> str:
    """The storage spec: an RDB URL or `journal:PATH`. Raises ValueError for something that is neither."""
    if storage is None:
        if workers > 1:  # SQLite locks up under several writers; the journal file is made for that
            return f"journal:{(out_dir / 'optuna-journal.log').resolve()}"
        return f"sqlite:///{(out_dir / 'optuna.db').resolve()}"
    if storage.startswith("journal:") or (storage.endswith(".log") and "://" not in storage):
        return f"journal:{Path(storage.removeprefix('journal:')).resolve()}"
    if "://" not in storage:
        raise ValueError(f"bad Optuna storage {storage!r}: expected an RDB URL (sqlite:///PATH, "
                         "postgresql://USER@HOST/DB, mysql://...) or journal:PATH")
    return storage


def open_storage(spec: str) -> Any:
    """The Optuna storage for `spec`; any failure to open it becomes a ValueError saying what was tried."""

    try:
        if spec.startswith("journal:"):
            return optuna.storages.JournalStorage(JournalFileBackend(spec.removeprefix("journal:")))
        return optuna.storages.RDBStorage(spec)
    except Exception as exc:
        raise ValueError(f"cannot open Optuna storage {spec!r}: {type(exc).__name__}: {exc}. Expected an RDB URL "
                         "(sqlite:///PATH, postgresql://USER@HOST/DB) with its driver, or journal:PATH") from exc


def lock_path(spec: str, out_dir: Path) -> Path:
    """One lock per storage file, so every local process sharing it serialises its trial reservations."""
    if spec.startswith("journal:"):
        return Path(spec.removeprefix("journal:") + ".budget")
    if spec.startswith("sqlite:///"):
        return Path(spec.removeprefix("sqlite:///") + ".budget")
    return out_dir / "optuna-budget"  # a remote RDB: guards this machine; other machines are caught in _reserve


def fail_dead_trials(study: Any) -> None:
    """Mark FAIL the RUNNING trials whose worker ran on this host and is gone (killed), so a resume re-runs them."""

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(WORKER_ATTR, "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not alive(int(pid)):
            log.warning("%s trial %d was left RUNNING by a dead worker (%s); marking it FAIL",
                        study.study_name, trial.number, owner)
            study.tell(trial.number, state=TrialState.FAIL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
