"""Everything a run builds before its first step, from a resolved `RunConfig`: data resident on the device, the
encoder, the strategy, the optimiser and schedule, the augmentation.

    setup = build_setup(config)             # loads the dataset (cached on disk after the first decode)
    setup = setup_from_data(config, data, device)   # the same from an already loaded dataset (benchmarks)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from tempbench.augment import TwoViewAugment
from tempbench.config import RunConfig
from tempbench.datasets import ImageDataset, load_dataset
from tempbench.encoders import create_encoder
from tempbench.provenance import resolve_device
from tempbench.strategies import Strategy, create_strategy, get_strategy_class

from .optim import build_optimizer, build_scheduler, scaled_lr

# Streams of `seed_for`: each random choice of a run has its own, so changing one never shifts another.
ORDER, AUGMENT, HOLDOUT = 0, 1, 2


def seed_for(seed: int, epoch: int, stream: int) -> int:
    """A distinct, reproducible seed per (run seed, epoch, stream)."""
    return (seed * 1_000_003 + epoch * 7919 + stream) % (2**63)


@dataclasses.dataclass
class Setup:
    """The objects of one run. `train_idx` are the training-split positions contrastive training uses (all of them
    unless `val_fraction` holds some out); `val_idx` the held-out ones."""

    config: RunConfig
    device: torch.device
    data: ImageDataset
    train_idx: Tensor
    val_idx: Tensor
    images: Tensor  # (N_train, C, H, W) uint8, resident on the device
    model: torch.nn.Module
    strategy: Strategy
    optimizer: torch.optim.Optimizer
    scheduler: Any
    augment: TwoViewAugment
    steps_per_epoch: int


def build_setup(config: RunConfig) -> Setup:
    """Load the dataset the config names and build everything else; bad inputs fail before any step."""
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    data = load_dataset(config.dataset, long_tail=config.long_tail, image_size=config.image_size,
                        seed=config.subset_seed)
    return setup_from_data(config, data, device)


def setup_from_data(config: RunConfig, data: ImageDataset, device: torch.device) -> Setup:
    """Everything after loading. `tempbench perf` passes synthetic images here, so the benchmark times the very
    objects a run trains with."""
    train_idx, val_idx = split_holdout(data.train_labels, config.val_fraction, config.seed)
    steps_per_epoch = len(train_idx) // config.batch_size  # drop_last: every step has the same shape
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(train_idx)} training images of "
                         f"{data.name}; use a smaller batch_size")
    images = data.train_images[train_idx].to(device)
    model = build_model(config, data, device, extra_outputs=get_strategy_class(config.strategy).extra_outputs)
    strategy = create_strategy(config.strategy, num_samples=len(train_idx), **config.hyperparameters).to(device)
    strategy.check_inputs = False  # batches are slices of a permutation: distinct and in range by construction
    optimizer = build_optimizer(model, strategy, name=config.optimizer, lr=scaled_lr(config.lr, config.batch_size),
                                weight_decay=config.weight_decay, momentum=config.momentum)
    total = steps_per_epoch * config.epochs
    scheduler = build_scheduler(optimizer, total, min(total, round(config.warmup_epochs * steps_per_epoch)))
    augment = TwoViewAugment(recipe=data.augment, image_size=data.image_size, mean=data.mean, std=data.std)
    return Setup(config, device, data, train_idx, val_idx, images, model, strategy, optimizer, scheduler, augment,
                 steps_per_epoch)


def build_model(config: RunConfig, data: ImageDataset, device: torch.device, extra_outputs: int = 0) -> torch.nn.Module:
    """The encoder on `device` (channels_last on CUDA), compiled in place if the config asks. A strategy that
    declares `extra_outputs` (e.g. TaU's per-input temperature) gets that many more projector columns."""
    model = create_encoder(config.encoder, in_channels=data.channels, image_size=data.image_size,
                           projector_hidden=config.projector_hidden,
                           projector_out=config.projector_out + extra_outputs).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        model.compile()  # in place (nn.Module.compile): state-dict keys stay those of the eager model
    return model


def split_holdout(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Stratified split of training positions into (contrastive training, held-out validation); a class with fewer
    than two images gives none. fraction 0: everything trains."""
    if fraction == 0:
        return torch.arange(len(labels)), torch.zeros(0, dtype=torch.int64)
    gen = torch.Generator().manual_seed(seed_for(seed, 0, HOLDOUT))
    train, held = [], []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        n_val = int(fraction * len(members)) if len(members) >= 2 else 0
        held.append(members[:n_val])
        train.append(members[n_val:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(held)).values
