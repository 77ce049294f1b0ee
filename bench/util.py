"""Helpers every layer shares — the CLI, the wings of `bench/`, `strategies/` and `datasets/` alike. Standard
library only, and nothing here imports the rest of tempbench, so importing it can never create a cycle.

- `did_you_mean` — the hint every "unknown name" error carries;
- `slug` — a file-name-safe version of a name;
- `check_type` — the strict-config rule every config shares: a value of the wrong type is an error, never coerced;
- `write_atomic` — every cache, result, report, figure and checkpoint file is written to a temporary file in its
  folder and renamed into place, so a reader (or a crash) never sees half a file;
- `check_output_folder` — an output folder that cannot take files is refused before any work;
- `load_entry_points` — the plug-in hook of every registry (strategies, sources, metrics, pairings);
- `MissingExtra` — an optional dependency group is not installed: the CLI prints its one line with the pip command;
- `RowNotKept` — no file could take a finished run's row: the CLI prints the row on stdout and one line.
"""

from __future__ import annotations

import difflib
import glob
import math
import os
import re
import socket
import tempfile
import time
import types
import typing
import warnings
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, Any


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest of `choices`, or "" when nothing is close (difflib ratio ≥ 0.6)."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def slug(text: object, default: str = "x") -> str:
    """A file-name-safe version of `text`: runs of anything but letters, digits, `_` and `.` become one `-`
    ("imagefolder:/data/x" -> "imagefolder-data-x")."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", str(text)).strip("-") or default


def check_type(name: str, value: Any, hint: Any) -> Any:
    """`value` if it has the type `hint` declares, an int where a float is declared as that float; else ValueError
    "NAME must be float, got 'abc'". A wrong type is an error, never coerced (strict configs, as in nanoGPT): a bool
    is no number, a float must be finite; a list stands for a tuple (JSON and TOML have none). Only the outer class
    of a generic is checked (tuple[...] -> tuple); a hint that names no class (Any) accepts anything."""
    allowed = _allowed_types(hint)
    if not allowed or (value is None and type(None) in allowed):
        return value
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    accepted = (*allowed, list) if tuple in allowed else allowed
    if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in allowed):
        names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in allowed)
        raise ValueError(f"{name} must be {names}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


_TYPE_NAMES = {type(None): "None", tuple: "list"}  # as a user writes them in --set and TOML


def _allowed_types(hint: Any) -> tuple[type, ...]:
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if is_union else (hint,)
    return tuple(t for t in (typing.get_origin(m) or m for m in members) if isinstance(t, type))


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[Any]], None], text: bool = True) -> Path:
    """Call `write(fh)` on a temporary file next to `path`, fsync it, then `os.replace` it onto `path` (atomic on
    POSIX within one file system). The temporary file is removed if `write` raises (an OSError that a library
    wrapped in its own error is raised as the OSError); one a killed process left behind is removed by the next
    write of the same file (`remove_stale_tmp`). Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(path)
    writer = f"{socket.gethostname()}-{os.getpid()}"  # in the name: see `remove_stale_tmp`
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{writer}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w" if text else "wb", **({"newline": "", "encoding": "utf-8"} if text else {})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        wrapped = exc.__context__
        if isinstance(exc, Exception) and not isinstance(exc, OSError) and isinstance(wrapped, OSError):
            # a library that wrapped the file system's error in its own (torch.save: a RuntimeError from its zip
            # writer on a full disk): the error it wrapped, naming the file, is what callers handle and users read
            raise OSError(wrapped.errno, wrapped.strerror, str(path)) from exc
        raise
    return path


_ANONYMOUS_TMP_MAX_AGE_S = 3600  # a temporary file without a writer in its name (older versions) is stale after this


def remove_stale_tmp(path: Path) -> None:
    """Remove the temporary files of earlier writes of `path` whose writer is gone: a process of this machine that
    no longer runs, or no writer named and untouched for an hour. Each name says who writes it
    (`.runs.csv.HOST-PID.RANDOM.tmp`), so a file that another live process, or another machine sharing the
    folder, is still writing is never touched."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(?P<host>.+)-(?P<pid>\d+)\.)?[^.]+\.tmp")
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        found = pattern.fullmatch(tmp.name)
        if found is not None and _writer_is_gone(found["host"], found["pid"], tmp):
            tmp.unlink(missing_ok=True)


def _writer_is_gone(host: str | None, pid: str | None, tmp: Path) -> bool:
    if host is None:
        try:
            return time.time() - tmp.stat().st_mtime > _ANONYMOUS_TMP_MAX_AGE_S
        except FileNotFoundError:  # its writer finished meanwhile
            return False
    if host != socket.gethostname() or os.name != "posix":  # another machine's; on Windows, signal 0 is Ctrl-C
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):
        return True
    except PermissionError:  # another user's process, alive
        return False
    return False


def check_output_folder(folder: str | os.PathLike[str]) -> None:
    """ValueError (one line, naming the folder) when `folder` cannot take files: a file in its place or above it, a
    read-only folder or file system, a full disk. Probed by writing and syncing a few bytes into an unnamed
    temporary file in the folder, or in its nearest existing parent (nothing is created, nothing left behind): as
    root, permission bits alone do not say whether a write fails."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == folder and not folder.is_dir():
        raise ValueError(f"the output folder {folder} is a file, not a folder")
    if not existing.is_dir():
        raise ValueError(f"the output folder {folder} cannot be created: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing) as fh:
            fh.write(b"\0" * 4096)  # a block: an empty file can still be created on a full disk
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        where = "cannot be written" if existing == folder else f"cannot be created in {existing}"
        raise ValueError(f"the output folder {folder} {where}: {exc.strerror or exc}") from None


_LOADED_GROUPS: set[str] = set()


def load_entry_points(group: str, register: Callable[[str, Any], None]) -> None:
    """Load every installed entry point of `group` once per process and hand each `(name, loaded object)` to
    `register`, which decides what the object is (a class, an instance, or a module that registered itself on
    import and needs nothing more). Later calls for the same group do nothing."""
    if group in _LOADED_GROUPS:
        return
    _LOADED_GROUPS.add(group)  # before loading: a plug-in that lists the registry on import must not recurse
    for ep in entry_points(group=group):
        register(ep.name, ep.load())


class MissingExtra(ImportError):
    """An optional group of dependencies (a pyproject extra) is not installed. The CLI reports it in one line with
    the command that installs it, exit code 2, no traceback: it is the user's to fix, not a bug."""

    def __init__(self, what: str, extra: str, missing: str = "", verb: str = "need") -> None:
        """`what` the feature ("image–text datasets"), `extra` the pyproject extra ("text"), `missing` the module
        that failed to import (shown in brackets), `verb` agreeing with `what` ("need" or "needs")."""
        self.what, self.extra, self.missing = what, extra, missing
        detail = f" ({missing} is not installed)" if missing else ""
        super().__init__(f"{what} {verb} the {extra} extra: pip install -e '.[{extra}]'{detail}")


class WorkersLost(RuntimeError):
    """Every local worker of a study or suite sweep ended, some killed, before its budget was met: the study is kept,
    to be resumed. The command line reports it in one line, exit code 1 (not a user mistake, not a bug)."""


class RowNotKept(Exception):
    """No file could take a finished run's result row (neither the CSV nor the JSON beside it: a full disk, say).
    The row travels with the error, so the command line prints it on stdout (`row`) with one line saying what could
    not be written where: the numbers of a finished run are never lost."""

    def __init__(self, message: str, row: dict[str, Any]) -> None:
        super().__init__(message)
        self.row = row


class ArtifactWarning(UserWarning):
    """A figure or table of a finished run could not be written; the run and its row are kept."""


def write_or_warn(path: Path, write: Callable[[Path], Any]) -> Path | None:
    """`write(path)`; on any failure an `ArtifactWarning` naming the file, and None. A figure or a table must never
    cost the numbers of a finished run."""
    try:
        write(path)
    except Exception as exc:  # whatever went wrong (a full disk, matplotlib), the row is worth more than the file
        warnings.warn(f"could not write {path}: {type(exc).__name__}: {exc}", ArtifactWarning, stacklevel=2)
        return None
    return path


class FewVisitsWarning(UserWarning):
    """A per-sample strategy's state entries were updated too few times on average for its τ to have
    individualised: the run's per-sample numbers describe how often each entry was visited, not what it learned."""


class TauAtBoundWarning(UserWarning):
    """Most of a per-sample strategy's τ entries ended at one end of its `tau_bounds()`: a τ_i pinned at a bound is a
    global τ at that bound, so `fixed` at that τ is the comparison that says whether the per-sample rule did more."""
