"""Where data lives: the data directories searched for local copies, the cache directory, archive extraction."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

# The repository root for an editable install (datasets/ sits in it); the package root for a wheel install.
PACKAGE_PARENT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """`TEMPBENCH_CACHE`, default ~/.cache/tempbench: decoded tensors, extracted archives, downloads."""
    return Path(os.environ.get("TEMPBENCH_CACHE") or Path.home() / ".cache" / "tempbench").expanduser()


def data_dirs() -> list[Path]:
    """Directories searched for local copies, in order: each entry of `TEMPBENCH_DATA` (os.pathsep-separated),
    ../shared/data relative to the working directory and to the repository, then the cache directory."""
    env = [Path(p).expanduser() for p in os.environ.get("TEMPBENCH_DATA", "").split(os.pathsep) if p]
    candidates = [*env, Path.cwd().parent / "shared" / "data", PACKAGE_PARENT.parent / "shared" / "data", cache_dir()]
    unique: list[Path] = []
    for path in candidates:
        resolved = path.resolve()
        if resolved not in unique:
            unique.append(resolved)
    return unique


def find_local(relative: str, looked: list[str]) -> Path | None:
    """The first data directory holding `relative`, else None; every path tried is appended to `looked`."""
    for folder in data_dirs():
        path = folder / relative
        looked.append(str(path))
        if path.exists():
            return path
    return None


def is_archive(path: Path) -> bool:
    """Whether `path` is a tar archive (.tar, .tar.gz, .tgz) that `extract_archive` can unpack."""
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def extract_archive(archive: Path) -> Path:
    """Extract a tar archive once into the cache directory and return the folder; later calls reuse it.

    The folder is keyed by the archive's name, size and mtime, so a replaced archive is extracted again. Extraction
    goes to a temporary sibling that is renamed at the end, so an interrupted run never leaves a half folder.
    """
    stat = archive.stat()
    stem = archive.name
    for suffix in ARCHIVE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    target = cache_dir() / "extracted" / f"{stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths, links out of the folder and device files.
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, **kwargs)
        os.replace(tmp, target)
    except OSError:
        if target.is_dir():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (tarfile.TarError, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"cannot extract archive {archive}: {exc}") from None
    return target


def imagefolder_root(folder: Path) -> Path:
    """The folder holding train/, or its single sub-folder that does (archives often wrap everything in one)."""
    if (folder / "train").is_dir():
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subs) == 1 and (subs[0] / "train").is_dir():
        return subs[0]
    return folder
