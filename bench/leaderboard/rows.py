"""Result rows: one flat dict per run in a CSV (`runs.csv`), appended atomically with the union of the columns, so
a new metric shows up as a new column and older rows get blanks. Concurrent appends from several processes on one
machine are serialised by a folder lock; nothing is lost: a row the CSV cannot take is kept as JSON beside it, and
one no file can take travels up to the command line, which prints it. A row of a dirty tree keeps the code it ran
beside the CSV: its diff against HEAD as `diffs/HASH.diff` (`tempbench.provenance`).

A results file is read strictly: a truncated or corrupt row, or a file that is not UTF-8, is a ValueError naming
the line at fault (never a row silently padded with blanks, nor rewritten on the next append); a history cell that
is not JSON is a warning naming the run."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from tempbench.provenance import recorded_diff
from tempbench.util import ArtifactWarning, RowNotKept, write_atomic

# a row's `history` holds every epoch's numbers (and step losses): 200 epochs pass the csv module's default cell
# limit of 131,072 characters
csv.field_size_limit(2**31 - 1)


def append_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> Path:
    """Append one flat row to the CSV at `path` (created if missing), atomically, with the union of the columns. A
    row of a dirty tree (`git_diff_hash`) first gets its diff beside the CSV (`keep_diff`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(path.parent):
        if row.get("git_diff_hash"):
            keep_diff(path.parent, str(row["git_diff_hash"]), str(row.get("run_id", "?")))
        columns, rows = _read_csv_cells(path)
        columns += [c for c in row if c not in columns]
        rows.append({c: _cell(v) for c, v in row.items()})
        write_atomic(path, lambda fh: _write_csv(fh, columns, rows), text=True)
    return path


def keep_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> Path:
    """`append_row`, and if that fails, the row as JSON beside the CSV (`runs.csv.RUN_ID.json`) with an
    `ArtifactWarning` naming both: a finished run's numbers are never lost to a failed write. Returns the file the
    row is in; `RowNotKept` (carrying the row, for the command line to print) when neither file could be written."""
    path = Path(path)
    try:
        return append_row(path, row)
    except Exception as exc:  # whatever failed (a full disk, a corrupt CSV), the row is worth more than the table
        failed = exc
    spare = path.with_name(f"{path.name}.{row.get('run_id', 'row')}.json")
    try:
        write_atomic(spare, lambda fh: json.dump(_nan_to_none(dict(row)), fh, default=str, indent=1))
    except OSError as exc:
        message = (f"could not write the row of run {row.get('run_id', '?')} to {path} nor beside it to {spare} "
                   f"({exc.strerror or exc}); the row is printed on stdout as JSON")
        raise RowNotKept(message, dict(row)) from failed
    warnings.warn(f"could not append the row to {path} ({type(failed).__name__}: {failed}); it is kept in {spare}",
                  ArtifactWarning, stacklevel=2)
    return spare


def keep_diff(folder: str | os.PathLike[str], diff_hash: str, run: str = "?") -> Path | None:
    """Write the diff against HEAD that `diff_hash` names (`tempbench.provenance.git_state`) to
    `folder/diffs/HASH.diff`, atomically, unless it is there already; the file, or None with an `ArtifactWarning`
    if it could not be written (the run's row is kept all the same: the diff is provenance, not a result)."""
    target = Path(folder) / "diffs" / f"{diff_hash}.diff"
    if target.is_file():
        return target
    diff = recorded_diff(diff_hash)
    if diff is None:
        warnings.warn(f"run {run}: its tree's diff {diff_hash} is not the one this process read, so {target} is not "
                      f"written; the row says which commit and diff it ran", ArtifactWarning, stacklevel=3)
        return None
    try:
        return write_atomic(target, lambda fh: fh.write(diff), text=False)
    except OSError as exc:
        warnings.warn(f"run {run}: could not write its tree's diff to {target} ({exc.strerror or exc}); the row is "
                      f"kept, the code it ran is not", ArtifactWarning, stacklevel=3)
        return None


class CorruptCellWarning(UserWarning):
    """A cell of a results file that should hold JSON (a run's per-epoch history) does not: the run's other numbers
    are read, what needed that cell (its curves) leaves it out."""


def read_rows(path: str | os.PathLike[str]) -> pd.DataFrame:
    """All rows of a results CSV as a DataFrame (blank cells are NaN). A truncated or corrupt row, or a file that is
    not UTF-8, is a ValueError naming the line; a history cell that is not JSON, a `CorruptCellWarning` naming the
    run."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}: it is written as runs finish (tempbench train, "
                                f"tempbench run)")
    text = _read_text(path)
    if not text.strip():
        raise ValueError(f"results file {path} is empty")
    columns, records, lines = _parse_records(path, text)
    _warn_corrupt_histories(path, columns, records, lines)
    # pandas < 3 parses floats with a fast parser that can be one ulp off; "round_trip" reads back what was written
    # (pandas 3 does so by default and deprecates the keyword)
    exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
    return pd.read_csv(io.StringIO(text), **exact)


def check_rows_file(path: str | os.PathLike[str]) -> None:
    """ValueError naming the line at fault if the results file at `path` exists and is truncated, corrupt or not
    UTF-8: what a command that appends to it checks before any work, so no run trains into a file it cannot add
    its row to."""
    path = Path(path)
    if path.is_file():
        _parse_records(path, _read_text(path))


def _read_csv_cells(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file() or path.stat().st_size == 0:
        return [], []
    columns, records, _ = _parse_records(path, _read_text(path))
    return columns, [dict(zip(columns, record)) for record in records]


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ValueError(f"results file {path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def _parse_records(path: Path, text: str) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, records, the line each record starts on), blank lines skipped; ValueError naming the line of a
    record that the CSV grammar refuses (strict quoting) or whose field count is not the header's."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header, records, lines, line = [], [], [], 1
    try:
        for record in reader:
            if record and not header:
                header = record
            elif record:
                if len(record) != len(header):
                    raise _corrupt(path, line, f"{len(record)} fields where its header has {len(header)}")
                records.append(record)
                lines.append(line)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise _corrupt(path, line, str(exc)) from None
    return header, records, lines


def _corrupt(path: Path, line: int, what: str) -> ValueError:
    return ValueError(f"results file {path}, line {line}: {what} (a truncated or corrupt row: repair or delete that "
                      f"line)")


def _warn_corrupt_histories(path: Path, columns: list[str], records: list[list[str]], lines: list[int]) -> None:
    """One `CorruptCellWarning` per run whose history cell holds something other than a JSON list."""
    if "history" not in columns:
        return
    at, run_at = columns.index("history"), columns.index("run_id") if "run_id" in columns else None
    for record, line in zip(records, lines):
        problem = _not_a_json_list(record[at])
        if problem:
            run = record[run_at] if run_at is not None else f"on line {line}"
            warnings.warn(f"run {run}: its history cell ({path}, line {line}) is not valid JSON ({problem}); its "
                          f"per-epoch curves are left out", CorruptCellWarning, stacklevel=3)


def _not_a_json_list(cell: str) -> str:
    """Why a non-empty history cell is not a JSON list ("" when it is one, or empty)."""
    if not cell:
        return ""
    try:
        parsed = json.loads(cell)
    except ValueError as exc:
        return str(exc)
    return "" if isinstance(parsed, list) else f"a {type(parsed).__name__}, not a list"


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
