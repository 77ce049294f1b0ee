"""The `Pairing`: what the two inputs of a contrastive batch are, and everything in a run that follows from it.

A strategy sees two (B, d) tensors and a batch of indices; it does not care where they came from. The pairing
decides that. `views` pairs two augmented views of one labelled image (SimCLR); `image_text` pairs an image with one
of its captions (CLIP). Everything else that differs between the two lives in the pairing object, so the training
recipe (`tempbench.train.recipe`) reads the same for both and never asks which one it runs:

    data   = pairing.load(config)                        # the dataset, cut as the config says
    train  = pairing.training_data(config, data, device) # resident images, what one state entry is
    model  = pairing.build_model(config, data, train, device, out_dim)
    order  = pairing.epoch_order(train, seed, epoch)     # the strategy indices of an epoch, batch after batch
    a, b   = pairing.encode(setup, idx, generator)       # the strategy's two inputs for a global batch
    sidx   = pairing.state_index(train, idx)             # the idx the strategy gets: what indexes its state
    pairing.monitor(setup); pairing.evaluate(setup); pairing.row_fields(setup, report)

A pairing is registered once (`register_pairing`) and resolved once, from the dataset, into the run's configuration
(`RunConfig.pairing`); nothing after resolution looks it up by name again.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from tempbench.augment import normalize
from tempbench.util import ArtifactWarning, did_you_mean, load_entry_points

if TYPE_CHECKING:  # the config and the setup import pairings, never the reverse at run time
    from tempbench.config import RunConfig
    from tempbench.datasets import Card
    from tempbench.train.recipe import Setup


# Streams of `seed_for`: each random choice of a run draws from its own, so changing one never shifts another.
ORDER, AUGMENT, HOLDOUT, CAPTION = 0, 1, 2, 3  # epoch order, augmentation, held-out slice, caption drawn per image


def seed_for(seed: int, epoch: int, stream: int) -> int:
    """A distinct, reproducible seed per (run seed, epoch, stream): what makes a resumed run equal an uninterrupted
    one (no generator state has to be saved)."""
    return (seed * 1_000_003 + epoch * 7919 + stream) % (2**63)


@dataclass
class TrainData:
    """What contrastive training iterates over, resident on the device.

    images:      (N_img, C, H, W) uint8, the training images the encoder sees;
    train_idx:   (N_img,) positions of those images in the dataset's training split;
    val_idx:     (N_val,) positions held out of training for validation (views with `val_fraction`; else empty);
    num_samples: the rows of a strategy's per-sample state (images for views, pairs for image_text).
    """

    images: Tensor
    train_idx: Tensor
    val_idx: Tensor
    num_samples: int


class Pairing:
    """Base class of a pairing. A subclass sets `name` (the value datasets declare in their card or source kind)
    and implements the methods below; `tempbench.pairings.views` and `.image_text` are the two built-ins."""

    name: ClassVar[str] = ""
    # image views one training sample contributes to a step: 2 for two views, 1 for an image and its caption
    image_views: ClassVar[int] = 2
    # the per-epoch validation number fed to a study's pruner (never computed on the test split)
    monitor_metric: ClassVar[str] = ""
    study_metric: ClassVar[str] = ""  # the validation metric a study maximises unless told otherwise (a val_ metric)
    # run settings a sensitivity study adds for this pairing (e.g. a held-out slice for the views monitor)
    study_settings: ClassVar[dict[str, Any]] = {}

    # ---- configuration -------------------------------------------------------------------------------------------
    def data_settings(self, card: Card | None, settings: dict[str, Any]) -> dict[str, Any]:
        """The data settings a run records in its configuration (and hash), resolved from the card and the user's
        `settings`: image size, and whatever the pairing's datasets need (the long-tail cut for views)."""
        raise NotImplementedError

    def check(self, config: RunConfig) -> None:
        """Raise ValueError for a run setting that means nothing with this pairing (called by `RunConfig`)."""

    # ---- data and model ------------------------------------------------------------------------------------------
    def load(self, config: RunConfig) -> Any:
        """The dataset the config names, decoded once and cached on disk (`tempbench.datasets.load_dataset`)."""
        raise NotImplementedError

    def training_data(self, config: RunConfig, data: Any, device: torch.device) -> TrainData:
        """The training images resident on `device`, and what one strategy state entry is."""
        raise NotImplementedError

    def build_model(self, config: RunConfig, data: Any, train: TrainData, device: torch.device,
                    out_dim: int) -> nn.Module:
        """The trainable model on `device` whose projections (width `out_dim`) feed the strategy."""
        raise NotImplementedError

    def steps_per_epoch(self, train: TrainData, batch_size: int) -> int:
        """Optimiser steps of one epoch (drop_last: every step has the same shape). Default: one pass over the
        training images."""
        return len(train.train_idx) // batch_size

    def calibration_input(self, train: TrainData, data: Any) -> Tensor:
        """A small batch the model's image path takes, for timing the thread count (`train.threads`): 64
        normalised training images."""
        return normalize(train.images[:64], data.mean, data.std)

    # ---- one epoch, one batch ------------------------------------------------------------------------------------
    def epoch_order(self, train: TrainData, seed: int, epoch: int) -> Tensor:
        """(steps · B,) CPU int64: the strategy indices of epoch `epoch` in training order; consecutive slices of
        the batch size are the batches. Seeded by (seed, epoch) alone, so a resumed run sees the same order."""
        raise NotImplementedError

    def encode(self, setup: Setup, idx: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The strategy's two (B, out_dim) inputs for the global batch `idx` (B,), gathered across processes with
        gradient; augmentation draws come from `generator`."""
        raise NotImplementedError

    def epoch_fields(self, setup: Setup, tau: Tensor) -> dict[str, Any]:
        """Per-epoch τ analytics beyond the summary statistics every pairing gets (e.g. class-mean τ); `tau` is
        `state_entries` of the strategy's temperatures."""
        return {}

    # ---- per-sample strategy state: how the batch indexes it -----------------------------------------------------
    def state_index(self, train: TrainData, idx: Tensor) -> Tensor:
        """The idx the strategy gets for the batch `idx` of `epoch_order`: what indexes its per-sample state (and
        `Setup.visits`). Default: idx itself, one state entry per index."""
        return idx

    def visit_counts(self, train: TrainData, device: torch.device) -> Tensor:
        """Zero counts, int64 on `device`, of how often each per-sample state entry has been in a batch
        (`Setup.visits`), shaped to be indexed by `state_index` (`strategies.rows_of`). Default: (num_samples,)."""
        return torch.zeros(train.num_samples, dtype=torch.int64, device=device)

    def state_entries(self, train: TrainData, table: Tensor) -> Tensor:
        """The entries of a per-sample table (the strategy's `temperatures()`, the visit counts) that stand for
        state a batch can index, flattened: what τ statistics and visit counts are taken over. Default: all."""
        return table.flatten()

    # ---- evaluation and the row ----------------------------------------------------------------------------------
    def monitor(self, setup: Setup) -> dict[str, float]:
        """{monitor_metric: value} on validation data, every `monitor_every` epochs (never the test split)."""
        raise NotImplementedError

    def evaluate(self, setup: Setup) -> tuple[dict[str, Any], Any]:
        """(every registered metric of this pairing, the τ report or None) of the finished run. Under torchrun
        every process helps extract features; the others return ({}, None)."""
        raise NotImplementedError

    def row_fields(self, setup: Setup, report: Any) -> dict[str, Any]:
        """What the result row says about the training data and the τ analytics of this pairing."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<pairing {self.name}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled by name (study workers, spawned processes): the registered instance on the other side
        return (get_pairing, (self.name,))


# ---- the registry ---------------------------------------------------------------------------------------------------
ENTRY_POINT_GROUP = "tempbench.pairings"
_REGISTRY: dict[str, Pairing] = {}


def register_pairing(pairing: Pairing) -> Pairing:
    """Register a `Pairing` instance under its `name`; returns it. Registering another under a taken name is an
    error (the same instance again is a no-op)."""
    if not isinstance(pairing, Pairing) or not pairing.name:
        raise TypeError(f"register_pairing needs a Pairing instance with a name, got {pairing!r}")
    existing = _REGISTRY.get(pairing.name)
    if existing is not None and existing is not pairing:
        raise ValueError(f"pairing {pairing.name!r} is already registered ({type(existing).__name__})")
    _REGISTRY[pairing.name] = pairing
    return pairing


def _load_plugins() -> None:
    load_entry_points(ENTRY_POINT_GROUP, lambda _, obj: register_pairing(obj) if isinstance(obj, Pairing) else None)


def list_pairings() -> list[str]:
    """The registered pairing names, in registration order (the built-ins first)."""
    _load_plugins()
    return list(_REGISTRY)


def get_pairing(name: str) -> Pairing:
    """The pairing registered as `name`; an unknown name raises ValueError listing the registered ones."""
    _load_plugins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown pairing {name!r}{did_you_mean(name, _REGISTRY)}; registered: "
                         f"{', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def final_temperatures(strategy: Any) -> Tensor | None:
    """The per-sample τ (CPU float32) for the τ analytics, or None: for global-τ strategies, and, with an
    `ArtifactWarning`, when some τ is not finite (e.g. TaU's t/σ(r) once σ(r) underflows float32). The row is kept
    either way."""
    if not strategy.per_sample_tau:
        return None
    tau = strategy.temperatures().float().cpu()
    bad = int((~torch.isfinite(tau)).sum())
    if bad:
        largest = float(tau[torch.isfinite(tau)].max()) if bad < tau.numel() else float("nan")
        warnings.warn(f"{bad} of {tau.numel()} per-sample temperatures are not finite (largest finite: "
                      f"{largest:.3g}); τ analytics skipped, the row is kept", ArtifactWarning, stacklevel=2)
        return None
    return tau
