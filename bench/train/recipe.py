"""One training run, top to bottom: config → data → model → strategy → optimiser → loop → evaluate → row.

    config = resolve_run_config("isogclr", "digits-lt", settings={"epochs": 20})   # tempbench.config
    row = train(config, out_dir=Path("runs/x"))

Read `train` first: it is the whole run, and every step is a named call into the wing that owns it. The pairing
(`config.pairing`, resolved once from the dataset: two views of an image, or an image and its caption) decides what
the data, the model, one batch and the evaluation are; this file never asks which pairing it runs. Processes
(torchrun), checkpoints and the result row live in their own modules; the recipe shows where each happens.

Reproducibility: the data order and every augmentation draw come from generators seeded by (seed, epoch), so a run
resumed from an epoch-boundary checkpoint equals an uninterrupted one bit for bit on the CPU. The row is returned
(and tracked) before any figure is drawn: a failing artifact can never cost a finished run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tempbench.augment import TwoViewAugment
from tempbench.config import RunConfig
from tempbench.distributed import World, check_world, init_world, process_device, wrap_model
from tempbench.pairings import TrainData
from tempbench.pairings.base import AUGMENT, seed_for
from tempbench.strategies import Clock, StepOut, Strategy, rows_of, set_rows
from tempbench.tracking import NullTracker, Tracker

from .checkpoint import restore_setup, save_setup
from .optim import build_optimizer, build_scheduler, scaled_lr
from .row import build_row, final_metrics, run_id, run_name, run_tags, tau_at_bounds, tracked_params, write_artifacts
from .threads import calibrated_threads

EpochCallback = Callable[[int, dict[str, Any]], None]
TAU_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)  # of every training sample's τ, logged each epoch
RUN_BAR = "{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} steps [{elapsed}, run ETA {remaining}{postfix}]"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


@dataclasses.dataclass
class Setup:
    """The objects of one run, built by `build_setup` before the first step."""

    config: RunConfig
    device: torch.device
    world: World
    data: Any  # the loaded dataset (ImageDataset for views, CaptionDataset for image_text)
    train: TrainData  # what training iterates over, resident on the device (see the pairing)
    bf16: bool  # the encoder runs under bf16 autocast with channels_last inputs (strategies stay float32)
    model: torch.nn.Module  # the model itself (features, checkpoints)
    train_model: torch.nn.Module  # what a step calls: the model, or its DistributedDataParallel wrapper
    strategy: Strategy
    optimizer: torch.optim.Optimizer
    scheduler: Any
    augment: TwoViewAugment
    steps_per_epoch: int
    visits: Tensor  # int64, how often each strategy state entry has been in a batch (`Pairing.visit_counts`)

    @property
    def pairing(self) -> Any:
        """The run's pairing (`config.pairing`), for brevity in the loop."""
        return self.config.pairing


@dataclasses.dataclass
class Progress:
    """How far a run has come, saved in checkpoints."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # per-epoch metrics
    visits: Tensor | None = None  # int64 updates per state entry so far (`Setup.visits`)


# ---- the run ------------------------------------------------------------------------------------------------------
def train(config: RunConfig, *, out_dir: Path | None = None, resume: Path | None = None,
          tracker: Tracker | None = None, on_epoch: EpochCallback | None = None, tracker_parent: Any = None,
          checkpoints: bool = True) -> dict[str, Any] | None:
    """Train one run and evaluate it; returns the result row (also tracked when `tracker` is given); None on the
    other processes of a torchrun launch (rank 0 returns the row).

    out_dir: where checkpoints (`out_dir/checkpoints/<run_id>.pt`, if `checkpoints`) and τ tables go.
    resume: a checkpoint to continue from (same config required).
    on_epoch(epoch, metrics): called after every epoch (e.g. an Optuna pruning reporter; may raise to stop).
    """
    name = run_id(config)
    t0 = time.perf_counter()
    setup = build_setup(config)  # data, model, strategy, optimiser: everything before the first step
    time_data = time.perf_counter() - t0
    main = setup.world.main  # under torchrun only rank 0 writes checkpoints, rows and tracking
    tracker = (tracker or NullTracker()) if main else NullTracker()
    progress = Progress(**restore_setup(setup, Path(resume))) if resume is not None else Progress()
    if progress.visits is not None:
        setup.visits.copy_(progress.visits)
    ckpt = out_dir / "checkpoints" / f"{name}.pt" if out_dir is not None and checkpoints and main else None
    handle = tracker.start_run(run_name(config), tracked_params(setup), parent=tracker_parent,
                               tags=run_tags(config, name))
    try:
        t1 = time.perf_counter()
        run_epochs(setup, progress, ckpt, tracker, handle, on_epoch)  # the loop, with monitor and checkpoints
        time_train = time.perf_counter() - t1
        t2 = time.perf_counter()
        metrics, tau_report = config.pairing.evaluate(setup)  # every registered metric of the pairing
        if not main:
            return None
        times = {"time_data_s": time_data, "time_train_s": time_train, "time_eval_s": time.perf_counter() - t2}
        row = build_row(setup, progress.history, metrics, tau_report, name, times)
        tracker.log_metrics(handle, final_metrics(row))
    except BaseException:
        tracker.end_run(handle, status="FAILED")
        raise
    write_artifacts(tracker, handle, setup, tau_report, out_dir, name)  # figures last: a warning at worst
    tracker.end_run(handle)
    return row


def build_setup(config: RunConfig) -> Setup:
    """Join the process group (under torchrun), load the dataset the config names (decoded once, then cached on
    disk) and build everything else; bad inputs fail before any step."""
    world = init_world(config.device)
    device = process_device(config.device, world)
    torch.manual_seed(config.seed)  # initialisation of every tower and head
    data = config.pairing.load(config)
    return setup_from_data(config, data, device, world)


def setup_from_data(config: RunConfig, data: Any, device: torch.device, world: World | None = None) -> Setup:
    """Everything after loading. `tempbench perf` passes synthetic data here, so the benchmark times the very
    objects a run trains with."""
    world, pairing = world or World(), config.pairing
    check_world(config.batch_size, config.norm, world, device)
    # ---- data: resident on the device, and what one strategy state entry is
    train_data = pairing.training_data(config, data, device)
    steps_per_epoch = pairing.steps_per_epoch(train_data, config.batch_size)  # drop_last: steps of one shape
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(train_data.train_idx)} training images of "
                         f"{data.name}; use a smaller batch_size")
    # ---- model: a strategy that consumes extra projector columns (TaU's per-input τ) gets them in every tower
    out_dim = config.projector_out + config.strategy_class.extra_outputs
    model = pairing.build_model(config, data, train_data, device, out_dim)
    bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        model.compile()  # in place (nn.Module.compile): state-dict keys stay those of the eager model
    if device.type == "cpu":
        torch.set_num_threads(config.threads or calibrated_threads(model, pairing.calibration_input(train_data, data)))
    # ---- strategy: its state has one entry per training sample (image, or image–caption pair)
    strategy = config.strategy_class(train_data.num_samples, config.strategy_config).to(device)  # checked once
    strategy.check_inputs = False  # batches are slices of a permutation: distinct and in range by construction
    # ---- optimiser: learning rate per 256 examples, linear warmup then cosine, per step
    optimizer = build_optimizer(model, strategy, name=config.optimizer, lr=scaled_lr(config.lr, config.batch_size),
                                weight_decay=config.weight_decay, momentum=config.momentum)
    total = steps_per_epoch * config.epochs
    scheduler = build_scheduler(optimizer, total, min(total, round(config.warmup_epochs * steps_per_epoch)))
    augment = TwoViewAugment(recipe=data.augment, image_size=data.image_size, mean=data.mean, std=data.std,
                             views=pairing.image_views)
    visits = pairing.visit_counts(train_data, device)
    return Setup(config, device, world, data, train_data, bf16, model, wrap_model(model, config.norm, world),
                 strategy, optimizer, scheduler, augment, steps_per_epoch, visits)


# ---- the loop -----------------------------------------------------------------------------------------------------
def run_epochs(setup: Setup, progress: Progress, ckpt: Path | None, tracker: Tracker, handle: Any,
               on_epoch: EpochCallback | None) -> None:
    """Epochs from `progress.epoch` to the end: train, monitor every `monitor_every` epochs, log, checkpoint."""
    cfg = setup.config
    for epoch in range(progress.epoch, cfg.epochs):
        try:
            metrics, progress.step = train_one_epoch(setup, epoch, progress.step)
        except NonFiniteLossError as err:
            kept = ckpt if ckpt is not None and ckpt.exists() else None
            raise NonFiniteLossError(f"{err}; last good checkpoint: {kept or 'none (no checkpoint was taken)'}"
                                     ) from None
        if cfg.monitor_every and ((epoch + 1) % cfg.monitor_every == 0 or epoch + 1 == cfg.epochs):
            metrics.update(cfg.pairing.monitor(setup))  # validation data only, never the test split
        progress.epoch, progress.visits = epoch + 1, setup.visits.cpu()
        progress.history.append(metrics)
        tracker.log_metrics(handle, {f"train/{k}": v for k, v in metrics.items() if isinstance(v, float)},
                            step=epoch + 1)
        last = epoch + 1 == cfg.epochs
        if ckpt is not None and (last or (cfg.checkpoint_every and progress.epoch % cfg.checkpoint_every == 0)):
            save_setup(ckpt, setup, dataclasses.asdict(progress))
        if on_epoch is not None:
            on_epoch(epoch, metrics)


def train_one_epoch(setup: Setup, epoch: int, step: int) -> tuple[dict[str, Any], int]:
    """One pass over the pairing's epoch order (drop_last), starting at global step `step`. Returns (the epoch's
    metrics, the next global step). Raises NonFiniteLossError naming the first bad step.

    The host syncs only every `log_every` steps (progress bar, NaN check): a `.item()` per step would stall a GPU."""
    cfg, device, spe = setup.config, setup.device, setup.steps_per_epoch
    setup.model.train()
    order = cfg.pairing.epoch_order(setup.train, cfg.seed, epoch).to(device)
    aug_gen = torch.Generator(device=device).manual_seed(seed_for(cfg.seed, epoch, AUGMENT))
    losses: list[Tensor] = []
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    # the bar counts the whole run's steps, so its ETA is the run's (at this epoch's pace), not the epoch's
    bar = tqdm(total=spe * cfg.epochs, initial=epoch * spe, disable=not cfg.progress, leave=False, unit="step",
               desc=f"{cfg.strategy} epoch {epoch + 1}/{cfg.epochs}", bar_format=RUN_BAR)
    start, out = time.perf_counter(), None
    for i in range(spe):
        idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        clock = Clock(step=step + i, epoch=epoch, epochs=cfg.epochs, steps_per_epoch=spe)
        out = train_step(setup, idx, clock, aug_gen)
        loss = out.loss.detach()
        losses.append(loss)
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), clock.step, first_bad)
        if (i + 1) % cfg.log_every == 0 or i + 1 == spe:
            _sync_and_check(bar, first_bad, loss, out, epoch, views=2 * cfg.batch_size * (i + 1),
                            seconds=time.perf_counter() - start)
            bar.update(epoch * spe + (i + 1) - bar.n)
    bar.close()
    step_losses = torch.stack(losses).tolist()  # one host sync an epoch
    metrics = epoch_metrics(setup, sum(step_losses) / spe, out, time.perf_counter() - start)
    return {**metrics, "step_losses": step_losses}, step + spe


def train_step(setup: Setup, idx: Tensor, clock: Clock, aug_gen: torch.Generator) -> StepOut:
    """Encode the batch (the pairing's two inputs) → strategy loss → optimiser and schedule → strategy update.

    idx is the global batch of the epoch order's indices; under torchrun this process encodes its own slice and the
    strategy sees every process's projections with the global idx (see `tempbench.distributed`). The strategy gets
    the pairing's `state_index` of it: what indexes its per-sample state."""
    a, b = setup.pairing.encode(setup, idx, aug_gen)
    state_idx = setup.pairing.state_index(setup.train, idx)
    out = setup.strategy(a, b, state_idx, clock)  # float32 inside, whatever autocast gave
    setup.optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    setup.optimizer.step()
    setup.scheduler.step()
    setup.strategy.update(out, state_idx, clock)  # per-sample state, clamps: after the optimiser step
    # distinct entries (per column): a batch is a slice of a permutation, and holds an image at most once
    set_rows(setup.visits, state_idx, rows_of(setup.visits, state_idx) + 1)
    return out


def _sync_and_check(bar: Any, first_bad: Tensor, loss: Tensor, out: StepOut, epoch: int, views: int,
                    seconds: float) -> None:
    """The one host sync of `log_every` steps: stop on a non-finite loss, else refresh the progress bar."""
    if int(first_bad) >= 0:
        bar.close()
        raise NonFiniteLossError(f"loss became {float(loss)} at step {int(first_bad)} (epoch {epoch + 1})")
    bar.set_postfix(loss=f"{float(loss):.4f}", tau=f"{float(out.tau.mean()):.3f}", views_s=f"{views / seconds:.0f}")


def epoch_metrics(setup: Setup, mean_loss: float, out: StepOut, elapsed: float) -> dict[str, Any]:
    """Per-epoch numbers: loss, learning rate, throughput (2B inputs a step), τ over all training samples (mean,
    range, quantiles, the shares at its bounds `tau_at_min`/`tau_at_max`) over the entries state can hold
    (`Pairing.state_entries`), the strategy's own logs of the epoch's last batch (prefixed `batch_`), then the
    pairing's own τ analytics (views: `tau_by_class`)."""
    cfg = setup.config
    tau = cfg.pairing.state_entries(setup.train, setup.strategy.temperatures().float())  # image_text: both sides
    q = torch.quantile(tau, torch.tensor(TAU_QUANTILES, device=tau.device)).tolist()
    metrics: dict[str, Any] = {"loss": float(mean_loss), "lr": float(setup.scheduler.get_last_lr()[0]),
                               "views_per_s": 2 * cfg.batch_size * setup.steps_per_epoch / elapsed,
                               "tau_mean": float(tau.mean()), "tau_min": float(tau.min()), "tau_max": float(tau.max()),
                               **{f"tau_q{round(100 * p)}": v for p, v in zip(TAU_QUANTILES, q)},
                               **tau_at_bounds(setup.strategy, tau)}
    for key, value in out.logs.items():
        metrics.setdefault(f"batch_{key}", float(value))
    return {**metrics, **cfg.pairing.epoch_fields(setup, tau)}
