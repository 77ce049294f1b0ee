"""One training run, top to bottom: data -> encoder -> strategy -> optimiser -> loop -> evaluation -> result row.

    row = train(RunConfig(strategy="isogclr", dataset="digits-lt", epochs=20), out_dir=Path("runs/x"))

The loop keeps data resident on the device as uint8, augments on the device, and syncs with the host only every
`log_every` steps (progress, NaN check). Checkpoints are taken at epoch boundaries; per-epoch generators seeded by
(seed, epoch) make a resumed run equal an uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tempbench.config import RunConfig, make_run_config
from tempbench.provenance import resolve_device
from tempbench.tracking import NullTracker

EpochCallback = Callable[[int, dict[str, float]], None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


def build_config(*, strategy: str, dataset: str, epochs: int | None = None, seed: int = 0,
                 overrides: dict[str, Any] | None = None) -> RunConfig:
    """A RunConfig from the pieces a study or a CLI has; `overrides` mixes run settings and strategy hyperparameters
    under `strategy_params`."""
    values: dict[str, Any] = {"strategy": strategy, "dataset": dataset, "seed": seed, **(overrides or {})}
    if epochs is not None:
        values["epochs"] = epochs
    return make_run_config(**values)


def seed_for(seed: int, epoch: int, stream: int) -> int:
    """A distinct, reproducible seed per (run seed, epoch, stream): 0 = data order, 1 = augmentation."""
    return (seed * 1_000_003 + epoch * 7919 + stream) % (2**63)


@dataclasses.dataclass
class Setup:
    """Everything a run builds before its first step."""

    config: RunConfig
    device: torch.device
    data: Any  # the loaded dataset (tempbench.datasets)
    ssl_idx: Tensor  # training-set positions used for contrastive training
    monitor_idx: Tensor  # training-set positions held out for the kNN monitor
    images: Tensor  # (N_ssl, C, H, W) uint8, resident on the device
    model: torch.nn.Module
    strategy: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    augment: Any
    steps_per_epoch: int


def build_setup(config: RunConfig) -> Setup:
    """Data, encoder, strategy, optimiser and schedule, with every bad input rejected before any work starts."""
    from tempbench.datasets import load_dataset

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    data = load_dataset(config.dataset, long_tail=config.long_tail, image_size=config.image_size, seed=config.seed)
    return setup_from_data(config, data, device)


def setup_from_data(config: RunConfig, data: Any, device: torch.device) -> Setup:
    """Everything after loading: monitor split, resident images, encoder (compiled if asked), strategy, optimiser,
    schedule and augmentation. `data` is an ImageDataset; `tempbench perf` passes synthetic images here, so the
    benchmark times the very objects a run trains with."""
    from tempbench.augment import TwoViewAugment
    from tempbench.encoders import create_encoder
    from tempbench.optim import build_optimizer, build_scheduler, scaled_lr
    from tempbench.strategies import create_strategy

    ssl_idx, monitor_idx = split_monitor(data.train_labels, config.monitor_fraction, config.seed)
    steps_per_epoch = len(ssl_idx) // config.batch_size  # drop_last: every step has the same shape
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(ssl_idx)} training images of "
                         f"{data.name}; use a smaller batch_size")
    images = data.train_images[ssl_idx].to(device)
    model = create_encoder(config.encoder, in_channels=images.shape[1], image_size=data.image_size,
                           projector_hidden=config.projector_hidden, projector_out=config.projector_out).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        model.compile()  # in place (nn.Module.compile): state-dict keys stay those of the eager model
    strategy = create_strategy(config.strategy, num_samples=len(ssl_idx), **config.strategy_params).to(device)
    strategy.check_inputs = False  # batches are slices of a permutation: distinct and in range by construction
    optimizer = build_optimizer(model, strategy, name=config.optimizer, lr=scaled_lr(config.lr, config.batch_size),
                                weight_decay=config.weight_decay, momentum=config.momentum)
    total = steps_per_epoch * config.epochs
    scheduler = build_scheduler(optimizer, total, min(total, round(config.warmup_epochs * steps_per_epoch)))
    augment = TwoViewAugment(recipe=data.augment, image_size=data.image_size, mean=data.mean, std=data.std)
    return Setup(config, device, data, ssl_idx, monitor_idx, images, model, strategy, optimizer, scheduler, augment,
                 steps_per_epoch)


def split_monitor(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Stratified split of training positions into (contrastive training, kNN monitor); classes with fewer than
    two images give none to the monitor."""
    gen = torch.Generator().manual_seed(seed_for(seed, 0, 2))
    train, monitor = [], []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        n_mon = int(fraction * len(members)) if len(members) >= 2 else 0
        monitor.append(members[:n_mon])
        train.append(members[n_mon:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(monitor)).values


@dataclasses.dataclass
class Clock:
    """Training progress, saved in checkpoints."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)  # per-epoch metrics


def train(config: RunConfig, *, out_dir: Path | None = None, resume: Path | None = None, tracker: Any = None,
          on_epoch: EpochCallback | None = None, tracker_parent: Any = None) -> dict[str, Any]:
    """Train one run and evaluate it; returns the result row (also tracked when `tracker` is given).

    out_dir: where checkpoints go (`out_dir/checkpoints/<run_id>.pt`); None = no checkpoints.
    resume: a checkpoint to continue from (same config required).
    on_epoch(epoch, metrics): called after every epoch (e.g. an Optuna pruning reporter; may raise to stop).
    """
    from tempbench.report import build_row, evaluate_run

    tracker = tracker or NullTracker()
    name = run_id(config)
    t0 = time.perf_counter()
    setup = build_setup(config)
    time_data = time.perf_counter() - t0
    clock = Clock()
    ckpt_path = out_dir / "checkpoints" / f"{name}.pt" if out_dir is not None else None
    if resume is not None:
        clock = restore(setup, Path(resume))
    resolved = flat_config(config, setup)
    handle = tracker.start_run(name, resolved, parent=tracker_parent)
    try:
        t1 = time.perf_counter()
        run_epochs(setup, clock, ckpt_path, tracker, handle, on_epoch)
        time_train = time.perf_counter() - t1
        t2 = time.perf_counter()
        metrics, tau_report = evaluate_run(setup)
        time_eval = time.perf_counter() - t2
        row = build_row(setup, clock, metrics, tau_report, name,
                        {"time_data_s": time_data, "time_train_s": time_train, "time_eval_s": time_eval})
        tracker.log_metrics(handle, {k: v for k, v in row.items() if isinstance(v, float) and math.isfinite(v)})
        log_run_artifacts(tracker, handle, resolved, tau_report, out_dir, name)
        tracker.end_run(handle)
    except BaseException:
        tracker.end_run(handle, status="FAILED")
        raise
    return row


def run_id(config: RunConfig) -> str:
    slug = config.dataset.replace(":", "_").replace("/", "_").strip("_")[-40:]
    return f"{config.strategy}-{slug}-s{config.seed}-{config.hash()}"


def flat_config(config: RunConfig, setup: Setup) -> dict[str, Any]:
    values = dataclasses.asdict(config)
    values["strategy_params"] = setup.strategy.hparams()  # resolved, defaults included
    values["num_train"] = len(setup.ssl_idx)
    values["num_monitor"] = len(setup.monitor_idx)
    return values


def restore(setup: Setup, path: Path) -> Clock:
    from tempbench.checkpoint import load_checkpoint, restore_rng_states

    ckpt = load_checkpoint(path)
    if ckpt["config"] != dataclasses.asdict(setup.config):
        diff = sorted(k for k, v in ckpt["config"].items() if dataclasses.asdict(setup.config).get(k) != v)
        raise ValueError(f"checkpoint {path} was made with a different config (differs in {diff})")
    setup.model.load_state_dict(ckpt["model"])
    setup.optimizer.load_state_dict(ckpt["optimizer"])
    setup.scheduler.load_state_dict(ckpt["scheduler"])
    setup.strategy.load_state_dict(ckpt["strategy"])
    restore_rng_states(ckpt["rng"])
    return Clock(**ckpt["clock"])


def save(setup: Setup, clock: Clock, path: Path) -> None:
    from tempbench.checkpoint import save_checkpoint

    save_checkpoint(path, model=setup.model.state_dict(), optimizer=setup.optimizer.state_dict(),
                    scheduler=setup.scheduler.state_dict(), strategy=setup.strategy.state_dict(),
                    clock=dataclasses.asdict(clock), config=dataclasses.asdict(setup.config))


def run_epochs(setup: Setup, clock: Clock, ckpt_path: Path | None, tracker: Any, handle: Any,
               on_epoch: EpochCallback | None) -> None:
    from tempbench.loop import monitor_knn, train_one_epoch

    cfg = setup.config
    for epoch in range(clock.epoch, cfg.epochs):
        try:
            metrics = train_one_epoch(setup, epoch, clock)
        except NonFiniteLossError as err:
            kept = ckpt_path if ckpt_path is not None and ckpt_path.exists() else None
            raise NonFiniteLossError(f"{err}; last good checkpoint: {kept or 'none (no checkpoint was taken)'}"
                                     ) from None
        if cfg.monitor_every and ((epoch + 1) % cfg.monitor_every == 0 or epoch + 1 == cfg.epochs):
            metrics["knn_monitor"] = monitor_knn(setup)
        clock.epoch = epoch + 1
        clock.history.append(metrics)
        tracker.log_metrics(handle, metrics, step=epoch)
        last = epoch + 1 == cfg.epochs
        if ckpt_path is not None and (last or (cfg.checkpoint_every and clock.epoch % cfg.checkpoint_every == 0)):
            save(setup, clock, ckpt_path)
        if on_epoch is not None:
            on_epoch(epoch, metrics)


def log_run_artifacts(tracker: Any, handle: Any, resolved: dict[str, Any], tau_report: Any, out_dir: Path | None,
                      name: str) -> None:
    """Track the resolved config (`config.json`) and, for per-sample strategies, the τ tables and figure (kept in
    out_dir/tau/<run>). Without an out_dir (e.g. study trials) the files pass through a temporary folder: the
    tracking store keeps its own copy."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tempbench-artifacts-") as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(resolved, indent=2, sort_keys=True, default=str))
        tracker.log_artifact(handle, config_path)
        if tau_report is not None:
            folder = out_dir / "tau" / name if out_dir is not None else Path(tmp) / "tau"
            for path in tau_report.write(folder, title=name):
                tracker.log_artifact(handle, path, artifact_dir="tau")
