"""The inner loop: one epoch of contrastive training, one step, the per-epoch numbers, the validation kNN monitor.

Data stay resident on the device as uint8 and are augmented there; the host syncs only every `log_every` steps
(progress, NaN check). Per-epoch generators seeded by (seed, epoch) make a resumed run equal an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tempbench.eval import extract_features, knn_predict, prepare_features, search_neighbors
from tempbench.strategies import Clock, StepOut

from .distributed import gather_rows, gather_with_grad, local_slice, shard_range
from .image_text import CAPTION, val_r_mean
from .setup import AUGMENT, ORDER, Setup, seed_for

MONITOR_K, MONITOR_T = 200, 0.1  # the kNN protocol of the final evaluation, on the held-out validation slice


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


def train_one_epoch(setup: Setup, epoch: int, step: int) -> tuple[dict[str, float], int]:
    """One pass over a fresh permutation of the training images (drop_last), starting at global step `step`.
    Returns (the epoch's metrics, the next global step). Raises NonFiniteLossError naming the first bad step."""
    cfg, device, spe = setup.config, setup.device, setup.steps_per_epoch
    setup.model.train()
    perm = epoch_order(setup, epoch).to(device)
    aug_gen = torch.Generator(device=device).manual_seed(seed_for(cfg.seed, epoch, AUGMENT))
    losses: list[Tensor] = []
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    bar = tqdm(total=spe, disable=not cfg.progress, leave=False, desc=f"{cfg.strategy} {epoch + 1}/{cfg.epochs}")
    start, out = time.perf_counter(), None
    for i in range(spe):
        idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        clock = Clock(step=step + i, epoch=epoch, epochs=cfg.epochs, steps_per_epoch=spe)
        out = train_step(setup, idx, clock, aug_gen)
        loss = out.loss.detach()
        losses.append(loss)
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), clock.step, first_bad)
        if (i + 1) % cfg.log_every == 0 or i + 1 == spe:
            _sync_and_check(bar, first_bad, loss, out, epoch, views=2 * cfg.batch_size * (i + 1),
                            seconds=time.perf_counter() - start)
            bar.update((i + 1) - bar.n)
    bar.close()
    step_losses = torch.stack(losses).tolist()  # one host sync an epoch
    metrics = epoch_metrics(setup, sum(step_losses) / spe, out, time.perf_counter() - start)
    return {**metrics, "step_losses": step_losses}, step + spe


def epoch_order(setup: Setup, epoch: int) -> Tensor:
    """The strategy indices of an epoch, in training order (consecutive slices are the batches): a permutation of
    the training images; for image_text each image replaced by one of its caption pairs, drawn at random."""
    seed = setup.config.seed
    perm = torch.randperm(len(setup.images), generator=torch.Generator().manual_seed(seed_for(seed, epoch, ORDER)))
    if setup.pairs is None:
        return perm
    pair_of_image = setup.pairs.draw(torch.arange(len(setup.images)),
                                     torch.Generator().manual_seed(seed_for(seed, epoch, CAPTION)))
    return pair_of_image[perm]


def _sync_and_check(bar: Any, first_bad: Tensor, loss: Tensor, out: StepOut, epoch: int, views: int,
                    seconds: float) -> None:
    """The one host sync of `log_every` steps: stop on a non-finite loss, else refresh the progress bar."""
    if int(first_bad) >= 0:
        bar.close()
        raise NonFiniteLossError(f"loss became {float(loss)} at step {int(first_bad)} (epoch {epoch + 1})")
    bar.set_postfix(loss=f"{float(loss):.4f}", tau=f"{float(out.tau.mean()):.3f}", views_s=f"{views / seconds:.0f}")


def train_step(setup: Setup, idx: Tensor, clock: Clock, aug_gen: torch.Generator) -> StepOut:
    """Augment → encode both views in one batch → strategy loss → optimiser and schedule → strategy update.

    idx is the global batch; under torchrun this process augments and encodes its own slice, and the strategy
    sees every process's projections (`gather_with_grad`) with the global idx (see `distributed`)."""
    z1, z2 = encode_pairs(setup, idx, aug_gen)
    out = setup.strategy(z1, z2, idx, clock)  # float32 inside, whatever autocast gave
    setup.optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    setup.optimizer.step()
    setup.scheduler.step()
    setup.strategy.update(out, idx, clock)
    return out


TAU_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def encode_pairs(setup: Setup, idx: Tensor, aug_gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """The two (B, d) inputs of the strategy for the global batch `idx`: the projections of two augmented views of
    each image, or of one view of each image and of its caption (image_text). Under torchrun each process encodes
    its slice and the projections are gathered with gradient."""
    world = setup.world
    local = local_slice(idx, world)
    rows = local if setup.pairs is None else setup.pairs.images[local.cpu()].to(setup.device)
    views = torch.cat(setup.augment.slice_of(setup.images[rows], aug_gen, world.rank * len(local), len(idx)))
    if setup.bf16:
        views = views.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=setup.device.type, dtype=torch.bfloat16, enabled=setup.bf16):
        if setup.pairs is None:
            z1, z2 = setup.train_model(views).chunk(2)
        else:
            z1, z2 = setup.train_model(views, setup.pairs.captions[local.cpu()].to(setup.device))
    return gather_with_grad(z1, world), gather_with_grad(z2, world)


def epoch_metrics(setup: Setup, mean_loss: float, out: StepOut, elapsed: float) -> dict[str, Any]:
    """Per-epoch numbers: loss, learning rate, throughput, τ over all training samples (mean, range, quantiles), the
    strategy's own logs of the epoch's last batch (prefixed `batch_`), and `tau_by_class`, the class-mean τ (a
    list: kept in the row's history for the per-class τ figures, not tracked as a metric)."""
    cfg = setup.config
    tau = setup.strategy.temperatures().float().flatten()  # image_text: both anchors of every pair
    q = torch.quantile(tau, torch.tensor(TAU_QUANTILES, device=tau.device)).tolist()
    metrics: dict[str, Any] = {"loss": float(mean_loss), "lr": float(setup.scheduler.get_last_lr()[0]),
                               "views_per_s": 2 * cfg.batch_size * setup.steps_per_epoch / elapsed,
                               "tau_mean": float(tau.mean()), "tau_min": float(tau.min()), "tau_max": float(tau.max()),
                               **{f"tau_q{round(100 * p)}": v for p, v in zip(TAU_QUANTILES, q)}}
    for key, value in out.logs.items():
        metrics.setdefault(f"batch_{key}", float(value))
    if setup.pairs is None:  # labelled images: the class-mean τ (image_text pairs have no classes)
        metrics["tau_by_class"] = class_means(tau, setup.data.train_labels[setup.train_idx].to(tau.device),
                                              setup.data.num_classes)
    return metrics


def class_means(values: Tensor, labels: Tensor, num_classes: int) -> list[float | None]:
    """(C,) mean of `values` (N,) per class, None for a class without samples (JSON-friendly)."""
    sums = torch.bincount(labels, weights=values.double(), minlength=num_classes)
    counts = torch.bincount(labels, minlength=num_classes)
    return [float(s / n) if n else None for s, n in zip(sums.tolist(), counts.tolist())]


def sharded_features(setup: Setup, images: Tensor) -> Tensor:
    """Backbone features of `images` (float32, un-augmented); under torchrun each process extracts its shard and
    every process gets all of them."""
    start, stop = shard_range(len(images), setup.world)
    data = setup.data
    return gather_rows(extract_features(setup.model, images[start:stop], data.mean, data.std, setup.device),
                       setup.world)


def monitor(setup: Setup) -> dict[str, float]:
    """The per-epoch validation number: `knn_monitor` (kNN-200 top-1 of the held-out slice) for views,
    `r_mean_monitor` (r_mean on the val split) for image_text. Neither ever reads the test split."""
    if setup.pairs is None:
        return {"knn_monitor": monitor_knn(setup)}
    return {"r_mean_monitor": val_r_mean(setup.model, setup.data, setup.config, setup.device)}


def monitor_knn(setup: Setup) -> float:
    """kNN top-1 (k=200, T=0.1) of the held-out validation slice against the contrastive-training images: a
    label-using monitor that never touches the test set. NaN when nothing is held out."""
    if len(setup.val_idx) == 0:
        return math.nan
    data = setup.data
    bank = prepare_features(sharded_features(setup, setup.images))
    queries = prepare_features(sharded_features(setup, data.train_images[setup.val_idx]))
    neighbors = search_neighbors(bank, queries, MONITOR_K, backend=setup.config.eval_backend)
    bank_labels = data.train_labels[setup.train_idx].to(bank.device)
    pred = knn_predict(neighbors, bank_labels, data.num_classes, MONITOR_K, MONITOR_T)
    return 100.0 * float((pred.cpu() == data.train_labels[setup.val_idx]).double().mean())
