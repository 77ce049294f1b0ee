"""Files a finished run writes beside its row (τ tables and figures): each failure is a warning naming the file,
never an error, because a figure must never cost the numbers of a finished run."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ArtifactWarning(UserWarning):
    """A figure or table of a finished run could not be written; the run and its row are kept."""


def write_or_warn(path: Path, write: Callable[[Path], Any]) -> Path | None:
    """write(path); on failure an ArtifactWarning naming the file, and None."""
    try:
        write(path)
    except Exception as exc:  # a figure or table must never cost a finished run
        warnings.warn(f"could not write {path}: {type(exc).__name__}: {exc}", ArtifactWarning, stacklevel=2)
        return None
    return path
