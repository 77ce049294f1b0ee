"""Helpers every layer shares — the CLI, the wings of `bench/`, `strategies/` and `datasets/` alike. Standard
library only, and nothing here imports the rest of tempbench, so importing it can never create a cycle.

- `did_you_mean` — the hint every "unknown name" error carries;
- `slug` — a file-name-safe version of a name;
- `write_atomic` — every cache, result, report, figure and checkpoint file is written to a temporary file in its
  folder and renamed into place, so a reader (or a crash) never sees half a file;
- `load_entry_points` — the plug-in hook of every registry (strategies, sources, metrics, pairings);
- `MissingExtra` — an optional dependency group is not installed: the CLI prints its one line with the pip command.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
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


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[Any]], None], text: bool = True) -> Path:
    """Call `write(fh)` on a temporary file next to `path`, fsync it, then `os.replace` it onto `path` (atomic on
    POSIX within one file system). The temporary file is removed if `write` raises. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w" if text else "wb", **({"newline": "", "encoding": "utf-8"} if text else {})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
