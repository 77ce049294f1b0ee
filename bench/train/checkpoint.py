"""Checkpoints: model, optimiser, scheduler, strategy state, RNG states and the training progress, written atomically.

Data order and augmentation draws come from generators seeded by (seed, epoch), so an epoch-boundary checkpoint plus
the global RNG states is all a resumed run needs to continue exactly as an uninterrupted one.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tempbench.util import ArtifactWarning, write_atomic


def rng_states() -> dict[str, Any]:
    """Every global random state a run touches (torch, CUDA, numpy, Python), for a checkpoint."""
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Put back what `rng_states` saved (CUDA only where a GPU is present)."""
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, **parts: Any) -> Path:
    """torch.save `parts` (state dicts, clock, config) to `path` via a temp file + rename: never a torn file."""
    state = {**parts, "rng": rng_states()}
    return write_atomic(path, lambda fh: torch.save(state, fh), text=False)


class BadCheckpointError(ValueError):
    """A file that is not a readable tempbench checkpoint (truncated, foreign, or from another version)."""


CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "strategy", "progress", "config", "rng")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`; a missing file is FileNotFoundError, an unreadable one BadCheckpointError."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        # our own files: they hold numpy RNG state and config dicts, which the weights-only loader refuses
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch.load fails in many ways on a torn or foreign file
        raise BadCheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise BadCheckpointError(f"{path} is not a tempbench checkpoint (it lacks {', '.join(missing)})")
    return ckpt


def save_setup(path: Path, setup: Any, progress: dict[str, Any]) -> Path | None:
    """Checkpoint everything `restore_setup` needs to continue the run exactly. A checkpoint that cannot be written
    (a full disk, a read-only folder) is an `ArtifactWarning` and None: it only shortens what a crash would cost,
    so it must never end the run whose numbers are still to come."""
    try:
        return save_checkpoint(path, model=setup.model.state_dict(), optimizer=setup.optimizer.state_dict(),
                               scheduler=setup.scheduler.state_dict(), strategy=setup.strategy.state_dict(),
                               progress=progress, config=setup.config.to_dict())
    except OSError as exc:
        warnings.warn(f"could not save the checkpoint {path} ({exc.strerror or exc}); the run goes on without it",
                      ArtifactWarning, stacklevel=2)
        return None


def restore_setup(setup: Any, path: Path) -> dict[str, Any]:
    """Load a checkpoint of the same config into `setup` (and the global RNGs); returns its progress record."""
    ckpt = load_checkpoint(path)
    mine = setup.config.to_dict()
    if ckpt.get("config") != mine:
        diff = sorted(k for k in set(mine) | set(ckpt.get("config") or {})
                      if (ckpt.get("config") or {}).get(k) != mine.get(k))
        raise ValueError(f"checkpoint {path} was made with a different config (differs in {diff})")
    setup.model.load_state_dict(ckpt["model"])
    setup.optimizer.load_state_dict(ckpt["optimizer"])
    setup.scheduler.load_state_dict(ckpt["scheduler"])
    setup.strategy.load_state_dict(ckpt["strategy"])
    restore_rng_states(ckpt["rng"])
    return ckpt["progress"]
