"""The inner loop: one epoch of contrastive training, the per-epoch kNN monitor, feature extraction."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from tempbench.strategies import Step

MONITOR_K, MONITOR_T = 200, 0.1  # the kNN protocol of the final evaluation, on the held-out training slice


def train_one_epoch(setup: Any, epoch: int, clock: Any) -> dict[str, float]:
    """One pass over a fresh permutation of the training images (drop_last). Syncs with the host every
    `log_every` steps only; raises NonFiniteLossError naming the first step whose loss was NaN/inf."""
    from tqdm.auto import tqdm

    from tempbench.runner import NonFiniteLossError, seed_for

    cfg, device, spe = setup.config, setup.device, setup.steps_per_epoch
    setup.model.train()
    perm = torch.randperm(len(setup.images), generator=torch.Generator().manual_seed(seed_for(cfg.seed, epoch, 0)))
    perm = perm.to(device)
    aug_gen = torch.Generator(device=device).manual_seed(seed_for(cfg.seed, epoch, 1))
    loss_sum = torch.zeros((), device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    bar = tqdm(total=spe, disable=not cfg.progress, leave=False, desc=f"{cfg.strategy} {epoch + 1}/{cfg.epochs}")
    start, out = time.perf_counter(), None
    for i in range(spe):
        idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        step = Step(step=clock.step, epoch=epoch, epochs=cfg.epochs, steps_per_epoch=spe)
        out = train_step(setup, idx, step, aug_gen)
        clock.step += 1
        loss = out.loss.detach()
        loss_sum += loss
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step.step, first_bad)
        if (i + 1) % cfg.log_every == 0 or i + 1 == spe:
            if int(first_bad) >= 0:  # the one host sync of these log_every steps
                bar.close()
                raise NonFiniteLossError(f"loss became {float(loss)} at step {int(first_bad)} (epoch {epoch + 1})")
            views = 2 * cfg.batch_size * (i + 1) / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{float(loss):.4f}", tau=f"{float(out.tau.mean()):.3f}", views_s=f"{views:.0f}")
            bar.update((i + 1) - bar.n)
    bar.close()
    elapsed = time.perf_counter() - start
    return epoch_metrics(setup, loss_sum / spe, out, elapsed)


def train_step(setup: Any, idx: Tensor, step: Step, aug_gen: torch.Generator) -> Any:
    """Augment → encode both views in one batch → strategy loss → optimiser and schedule → strategy update."""
    cuda = setup.device.type == "cuda"
    v1, v2 = setup.augment(setup.images[idx], aug_gen)
    views = torch.cat([v1, v2])
    if cuda:
        views = views.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=setup.device.type, dtype=torch.bfloat16, enabled=cuda):
        z1, z2 = setup.model(views).chunk(2)
    out = setup.strategy(z1, z2, idx, step)  # float32 inside, whatever autocast gave
    setup.optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    setup.optimizer.step()
    setup.scheduler.step()
    setup.strategy.update(out, idx, step)
    return out


def epoch_metrics(setup: Any, mean_loss: Tensor, out: Any, elapsed: float) -> dict[str, float]:
    """Per-epoch numbers for tracking: loss, learning rate, throughput, τ summary, the strategy's own logs."""
    cfg = setup.config
    tau = setup.strategy.temperatures().float()
    q = torch.quantile(tau, torch.tensor([0.1, 0.5, 0.9], device=tau.device))
    metrics = {"loss": float(mean_loss), "lr": float(setup.scheduler.get_last_lr()[0]),
               "views_per_s": 2 * cfg.batch_size * setup.steps_per_epoch / elapsed,
               "tau_mean": float(tau.mean()), "tau_min": float(tau.min()), "tau_max": float(tau.max()),
               "tau_q10": float(q[0]), "tau_q50": float(q[1]), "tau_q90": float(q[2])}
    for key, value in out.logs.items():
        metrics.setdefault(f"strategy_{key}", float(value))
    return metrics


@torch.no_grad()
def extract_features(setup: Any, images: Tensor, batch: int = 1024) -> Tensor:
    """(N, feature_dim) float32 backbone features of un-augmented, normalised images, on the run's device."""
    from tempbench.augment import normalize

    model, device = setup.model, setup.device
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(images), batch):
        x = normalize(images[start:start + batch].to(device), setup.data.mean, setup.data.std)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            chunks.append(model.features(x).float())
    model.train(was_training)
    return torch.cat(chunks)


def monitor_knn(setup: Any) -> float:
    """kNN top-1 (k=200, T=0.1) of the held-out training slice against the contrastive-training images: a
    label-using monitor that never touches the test set. NaN when no slice is held out."""
    from tempbench.eval import knn_predict, prepare_features, search_neighbors

    if len(setup.monitor_idx) == 0:
        return math.nan
    data = setup.data
    bank = prepare_features(extract_features(setup, setup.images))
    queries = prepare_features(extract_features(setup, data.train_images[setup.monitor_idx]))
    neighbors = search_neighbors(bank, queries, MONITOR_K, backend=setup.config.eval_backend)
    bank_labels = data.train_labels[setup.ssl_idx].to(bank.device)
    pred = knn_predict(neighbors, bank_labels, data.num_classes, MONITOR_K, MONITOR_T)
    return 100.0 * float((pred.cpu() == data.train_labels[setup.monitor_idx]).double().mean())
