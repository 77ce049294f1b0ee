"""Result rows: one flat dict per run in a CSV (`runs.csv`), appended atomically with the union of the columns, so
a new metric shows up as a new column and older rows get blanks. Concurrent appends from several processes on one
machine are serialised by a folder lock; nothing is lost."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from tempbench.util import ArtifactWarning, write_atomic

# a row's `history` holds every epoch's numbers (and step losses): 200 epochs pass the csv module's default cell
# limit of 131,072 characters
csv.field_size_limit(2**31 - 1)


def append_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> Path:
    """Append one flat row to the CSV at `path` (created if missing), atomically, with the union of the columns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(path.parent):
        columns, rows = _read_csv_cells(path)
        columns += [c for c in row if c not in columns]
        rows.append({c: _cell(v) for c, v in row.items()})
        write_atomic(path, lambda fh: _write_csv(fh, columns, rows), text=True)
    return path


def keep_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> Path:
    """`append_row`, and if that fails, the row as JSON beside the CSV (`runs.csv.RUN_ID.json`) with an
    `ArtifactWarning` naming both: a finished run's numbers are never lost to a failed write. Returns the file the
    row is in."""
    path = Path(path)
    try:
        return append_row(path, row)
    except Exception as exc:  # whatever failed (a full disk, a corrupt CSV), the row is worth more than the table
        spare = path.with_name(f"{path.name}.{row.get('run_id', 'row')}.json")
        spare.write_text(json.dumps(_nan_to_none(dict(row)), default=str, indent=1))
        warnings.warn(f"could not append the row to {path} ({type(exc).__name__}: {exc}); it is kept in {spare}",
                      ArtifactWarning, stacklevel=2)
        return spare


def read_rows(path: str | os.PathLike[str]) -> pd.DataFrame:
    """All rows of a results CSV as a DataFrame (blank cells are NaN)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}: it is written as runs finish (tempbench train, "
                                f"tempbench run)")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"results file {path} is empty") from exc


def _read_csv_cells(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file() or path.stat().st_size == 0:
        return [], []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _write_csv(fh: IO[str], columns: list[str], rows: list[dict[str, str]]) -> None:
    writer = csv.DictWriter(fh, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _cell(value: Any) -> str:
    """A CSV cell: blank for None/NaN, repr for floats (round-trips), strict JSON (NaN as null) for lists and dicts."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_nan_to_none(value))
    return str(value)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on the folder (POSIX flock), so two processes appending at once lose no row."""
    try:
        import fcntl  # POSIX only
    except ImportError:  # Windows: no flock; appends from one process at a time are still atomic
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
