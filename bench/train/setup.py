"""Everything a run builds before its first step, from a resolved `RunConfig`: data resident on the device, the
encoder, the strategy, the optimiser and schedule, the augmentation.

    setup = build_setup(config)             # loads the dataset (cached on disk after the first decode)
    setup = setup_from_data(config, data, device)   # the same from an already loaded dataset (benchmarks)
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Any

import torch
from torch import Tensor

from tempbench.augment import TwoViewAugment, normalize
from tempbench.config import RunConfig
from tempbench.datasets import CaptionDataset, ImageDataset, load_dataset
from tempbench.encoders import create_encoder
from tempbench.provenance import resolve_device
from tempbench.strategies import Strategy, create_strategy, get_strategy_class

from .distributed import World, init_world
from .image_text import ImageTextModel, TrainingPairs, build_text_tower
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
    world: World
    data: ImageDataset | CaptionDataset
    train_idx: Tensor
    val_idx: Tensor
    images: Tensor  # (N_train, C, H, W) uint8, resident on the device
    bf16: bool  # the encoder runs under bf16 autocast with channels_last inputs (strategies stay float32)
    model: torch.nn.Module  # the encoder itself (features, checkpoints)
    train_model: torch.nn.Module  # what the step calls: the model, or its DistributedDataParallel wrapper
    strategy: Strategy
    optimizer: torch.optim.Optimizer
    scheduler: Any
    augment: TwoViewAugment
    steps_per_epoch: int
    pairs: TrainingPairs | None = None  # image_text: the training (image, caption) pairs


def build_setup(config: RunConfig) -> Setup:
    """Load the dataset the config names and build everything else; bad inputs fail before any step. Under
    torchrun this process joins the process group first."""
    world = init_world(config.device)
    device = process_device(config, world)
    torch.manual_seed(config.seed)
    long_tail = {"long_tail": config.long_tail, "seed": config.subset_seed} if config.pairing == "views" else {}
    data = load_dataset(config.dataset, image_size=config.image_size, **long_tail)
    return setup_from_data(config, data, device, world)


def process_device(config: RunConfig, world: World) -> torch.device:
    """The device of this process: under torchrun each process takes the GPU of its local rank."""
    device = resolve_device(config.device)
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


def setup_from_data(config: RunConfig, data: ImageDataset, device: torch.device, world: World | None = None) -> Setup:
    """Everything after loading. `tempbench perf` passes synthetic images here, so the benchmark times the very
    objects a run trains with."""
    world = world or World()
    check_world(config, world, device)
    if config.pairing == "image_text":
        pairs = TrainingPairs.of(data)
        train_idx, val_idx = torch.arange(len(data.splits["train"])), torch.zeros(0, dtype=torch.int64)
        images, num_samples = data.images[data.splits["train"]].to(device), len(pairs.captions)
    else:
        pairs = None
        train_idx, val_idx = split_holdout(data.train_labels, config.val_fraction, config.seed)
        images, num_samples = data.train_images[train_idx].to(device), len(train_idx)
    steps_per_epoch = len(train_idx) // config.batch_size  # drop_last: every step has the same shape
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(train_idx)} training images of "
                         f"{data.name}; use a smaller batch_size")
    model = build_model(config, data, device, extra_outputs=get_strategy_class(config.strategy,
                                                                               config.pairing).extra_outputs)
    if device.type == "cpu":
        torch.set_num_threads(config.threads or calibrated_threads(model, images, data))
    strategy = create_strategy(config.strategy, num_samples=num_samples, pairing=config.pairing,
                               **config.hyperparameters).to(device)
    strategy.check_inputs = False  # batches are slices of a permutation: distinct and in range by construction
    optimizer = build_optimizer(model, strategy, name=config.optimizer, lr=scaled_lr(config.lr, config.batch_size),
                                weight_decay=config.weight_decay, momentum=config.momentum)
    total = steps_per_epoch * config.epochs
    scheduler = build_scheduler(optimizer, total, min(total, round(config.warmup_epochs * steps_per_epoch)))
    augment = TwoViewAugment(recipe=data.augment, image_size=data.image_size, mean=data.mean, std=data.std,
                             views=1 if pairs is not None else 2)
    return Setup(config, device, world, data, train_idx, val_idx, images, uses_bf16(config, device), model,
                 wrap_model(model, config, world), strategy, optimizer, scheduler, augment, steps_per_epoch, pairs)


def uses_bf16(config: RunConfig, device: torch.device) -> bool:
    """bf16 autocast (and channels_last): the GPU recipe by default; asked for explicitly it also runs on the CPU,
    so the code path a GPU user takes is exercised without a GPU."""
    return config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")


def check_world(config: RunConfig, world: World, device: torch.device) -> None:
    if config.batch_size % world.size:
        raise ValueError(f"batch_size {config.batch_size} (the global batch) must divide evenly over the "
                         f"{world.size} processes")
    if config.norm == "sync_batch" and device.type != "cuda":
        raise ValueError("norm='sync_batch' needs CUDA (SyncBatchNorm); on the CPU use norm='group' for a run that "
                         "is exact across processes, or 'batch' for per-process statistics")


def wrap_model(model: torch.nn.Module, config: RunConfig, world: World) -> torch.nn.Module:
    """The model a step calls: itself, or under torchrun its DistributedDataParallel wrapper (SyncBatchNorm first
    with norm='sync_batch')."""
    if not world.distributed:
        return model
    if config.norm == "sync_batch":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [world.local_rank] if next(model.parameters()).is_cuda else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def build_model(config: RunConfig, data: ImageDataset | CaptionDataset, device: torch.device,
                extra_outputs: int = 0) -> torch.nn.Module:
    """The encoder on `device` (channels_last with bf16), compiled in place if the config asks; for image_text the
    image tower plus the text tower. A strategy that declares `extra_outputs` (e.g. TaU's per-input temperature)
    gets that many more projector columns, in both towers."""
    norm = "batch" if config.norm == "sync_batch" else config.norm  # converted to SyncBatchNorm by wrap_model
    out = config.projector_out + extra_outputs
    model = create_encoder(config.encoder, in_channels=data.channels, image_size=data.image_size,
                           projector_hidden=config.projector_hidden, projector_out=out, norm=norm).to(device)
    if config.pairing == "image_text":
        model = ImageTextModel(model, build_text_tower(config.text_tower, data, out, config.projector_hidden, device))
    if uses_bf16(config, device):
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        model.compile()  # in place (nn.Module.compile): state-dict keys stay those of the eager model
    return model


def calibrated_threads(model: torch.nn.Module, images: Tensor, data: ImageDataset, rounds: int = 3) -> int:
    """1 or all cores, whichever runs a forward + backward of this model faster right now (median of `rounds`
    interleaved timings on a small batch, ~0.3 s for the small CNN).

    Why measure: on an idle machine all cores win (0.87 vs 1.32 s a step here), but when other multi-threaded
    processes share the cores every parallel kernel waits at its barrier for a descheduled thread, and one thread
    wins (1.97 vs 2.61 s). The load average cannot tell these apart: it counts this process's own earlier runs.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores == 1:
        return 1
    x = normalize(images[:64], data.mean, data.std)
    # the timed passes update BatchNorm's running statistics: put them back, or the thread count would leave a
    # trace in the evaluated model (explicit and automatic threads gave different test accuracy)
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    times: dict[int, list[float]] = {1: [], cores: []}
    for _ in range(rounds + 1):  # the first round warms up the allocator and oneDNN
        for n in times:
            torch.set_num_threads(n)
            start = time.perf_counter()
            model(x).square().mean().backward()
            times[n].append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    return min(times, key=lambda n: statistics.median(times[n][1:]))


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
