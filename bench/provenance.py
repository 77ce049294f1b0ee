"""Where a result came from: package versions, the code (git commit, and whether the tree was dirty), device name
(recorded in every result row).

A row of a dirty tree names its diff against HEAD by hash (`git_diff_hash`); `append_row` keeps that diff beside
runs.csv as `diffs/HASH.diff`, so `git checkout COMMIT && git apply diffs/HASH.diff` rebuilds the code that ran.
`python -m tempbench.provenance check results/SUITE/runs.csv` counts a results file's clean and dirty rows (exit
code 1 if any row is dirty: committed results come from clean commits)."""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

PACKAGES = ("tempbench", "torch", "torchvision", "numpy", "faiss-cpu", "faiss-gpu", "scikit-learn")


@functools.cache
def package_versions() -> dict[str, str]:
    """Python's and each installed package of PACKAGES' version (an absent one, e.g. faiss-gpu, is left out)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


CHECKOUT = Path(__file__).resolve().parent.parent  # the checkout tempbench runs from (an editable install)
DIFF_HASH_LENGTH = 12  # hex digits of the diff's sha256 a row records
# What "dirty" looks at: the whole checkout but the committed results. A suite that appends rows to a tracked
# results/*/runs.csv would otherwise make every later row of the same sweep "dirty" (and its diff a copy of the rows).
CODE_PATHS = ("--", ".", ":(exclude)results")


@dataclass(frozen=True)
class GitState:
    """The code of a checkout: `commit` (HEAD's sha, '' outside a git checkout), `dirty` (a tracked file outside
    results/ differs from HEAD; untracked files do not count), `diff` (`git diff HEAD --binary` of those files,
    bytes, empty when clean) and
    `diff_hash` (the first 12 hex digits of the diff's sha256, '' when clean)."""

    commit: str = ""
    dirty: bool = False
    diff_hash: str = ""
    diff: bytes = b""


_DIFFS: dict[str, bytes] = {}  # every diff this process read, by hash: what `append_row` keeps beside runs.csv


def read_git_state(root: str | os.PathLike[str] = CHECKOUT) -> GitState:
    """The git state of the checkout at `root`, read now (rows record the cached `git_state`). Outside a git
    checkout, before its first commit or without git: an empty GitState, never an exception."""
    try:
        commit = _git(root, "rev-parse", "HEAD")
        status = _git(root, "status", "--porcelain", "--untracked-files=no", *CODE_PATHS)
    except (OSError, subprocess.SubprocessError):
        return GitState()
    if commit.returncode != 0:
        return GitState()
    sha = commit.stdout.decode().strip()
    if not status.stdout.strip():
        return GitState(sha)
    diff = _diff_against_head(root)
    diff_hash = hashlib.sha256(diff).hexdigest()[:DIFF_HASH_LENGTH] if diff else ""
    if diff_hash:
        _DIFFS[diff_hash] = diff
    return GitState(sha, True, diff_hash, diff)


@functools.cache
def git_state(root: str | os.PathLike[str] = CHECKOUT) -> GitState:
    """`read_git_state(root)`, read once per process: every row a process writes names the code it started with
    (a file edited while it runs changes neither the row nor the code it already imported)."""
    return read_git_state(root)


def git_commit() -> str:
    """The commit of the checkout tempbench runs from ('' outside a git checkout), '+dirty' if it has changes."""
    state = git_state()
    return state.commit + ("+dirty" if state.dirty else "")


def recorded_diff(diff_hash: str) -> bytes | None:
    """The diff with hash `diff_hash` if this process read it (`read_git_state`), else None."""
    return _DIFFS.get(diff_hash)


def _git(root: str | os.PathLike[str], *args: str, timeout: float = 5) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=timeout)


def _diff_against_head(root: str | os.PathLike[str]) -> bytes:
    """`git diff HEAD --binary` at `root` (binary files as patches `git apply` takes); b'' if git fails."""
    try:
        # raw and uncoloured whatever the user's git config says, so `git apply` takes it
        diff = _git(root, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--no-textconv", *CODE_PATHS,
                    timeout=60)
    except (OSError, subprocess.SubprocessError):
        return b""
    return diff.stdout if diff.returncode == 0 else b""


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; an unavailable cuda is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; valid: auto, cpu, cuda, cuda:N")
    return device


def device_name(device: torch.device) -> str:
    """A human-readable name of `device` for result rows: the GPU's model, or the CPU with torch's thread count
    (timings on a CPU depend on both)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# ---- checking results files -----------------------------------------------------------------------------------------
def row_provenance(row: dict[str, str | None]) -> str:
    """'clean', 'dirty' or 'unknown' (no commit recorded: run outside a git checkout) for one row's cells. A row
    written before `git_dirty` existed is dirty if its `git_commit` ends in '+dirty'."""
    commit, dirty = (row.get("git_commit") or "").strip(), (row.get("git_dirty") or "").strip().lower()
    if not commit:
        return "unknown"
    if not dirty:
        return "dirty" if commit.endswith("+dirty") else "clean"
    if dirty not in ("true", "false"):
        raise ValueError(f"run {row.get('run_id') or '?'}: git_dirty is {dirty!r}, not True or False")
    return "dirty" if dirty == "true" else "clean"


def count_provenance(path: str | os.PathLike[str]) -> Counter[str]:
    """How many rows of the results file at `path` are 'clean', 'dirty' and 'unknown' (`row_provenance`), and how
    many dirty rows name a diff that `diffs/` beside the file lacks ('diff_missing')."""
    path = Path(path)
    counts: Counter[str] = Counter(clean=0, dirty=0)
    for row in _read_cells(path):
        counts[row_provenance(row)] += 1
        diff_hash = (row.get("git_diff_hash") or "").strip()
        if diff_hash and not (path.parent / "diffs" / f"{diff_hash}.diff").is_file():
            counts["diff_missing"] += 1
    return counts


def format_counts(path: str | os.PathLike[str], counts: Counter[str]) -> str:
    """One line: `results/quick/runs.csv: 54 rows, 54 clean, 0 dirty` (and what else `count_provenance` found)."""
    rows = counts["clean"] + counts["dirty"] + counts["unknown"]
    line = f"{path}: {rows} row{'s' * (rows != 1)}, {counts['clean']} clean, {counts['dirty']} dirty"
    if counts["unknown"]:
        line += f", {counts['unknown']} without a commit"
    if counts["diff_missing"]:
        line += f" ({counts['diff_missing']} of them without their diff in diffs/)"
    return line


def _read_cells(path: Path) -> list[dict[str, str | None]]:
    """The rows of a results CSV as strings (a missing cell is None); FileNotFoundError or one-line ValueError."""
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}")
    csv.field_size_limit(2**31 - 1)  # history cells pass the default limit (see tempbench.leaderboard.rows)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"results file {path} is not a readable CSV ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    """`python -m tempbench.provenance check RUNS_CSV...`: one line of counts per file; exit code 0 if every row ran
    on a clean commit, 1 if a row ran on a dirty tree or outside a git checkout, 2 if a file cannot be read."""
    parser = argparse.ArgumentParser(prog="python -m tempbench.provenance",
                                     description="Where the rows of results files came from.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="count each file's rows from clean and dirty trees; exit 1 if any "
                                              "row is not from a clean commit")
    check.add_argument("paths", nargs="+", type=Path, metavar="RUNS_CSV", help="results files (runs.csv)")
    args = parser.parse_args(argv)
    try:
        counts = {path: count_provenance(path) for path in args.paths}
    except (ValueError, FileNotFoundError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    for path, found in counts.items():
        print(format_counts(path, found))
    return 1 if any(found["dirty"] or found["unknown"] for found in counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
