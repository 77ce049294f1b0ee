"""Checkpoints: model, optimiser, scheduler, strategy state, RNG states and the training clock, written atomically.

Data order and augmentation draws come from generators seeded by (seed, epoch), so an epoch-boundary checkpoint plus
the global RNG states is all a resumed run needs to continue exactly as an uninterrupted one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tempbench.atomic import write_atomic


def rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, **parts: Any) -> Path:
    """torch.save `parts` (state dicts, clock, config) to `path` via a temp file + rename: never a torn file."""
    state = {**parts, "rng": rng_states()}
    return write_atomic(path, lambda fh: torch.save(state, fh), text=False)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    # our own files: they hold numpy RNG state and config dicts, which the weights-only loader refuses
    return torch.load(path, map_location="cpu", weights_only=False)
