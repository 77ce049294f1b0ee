"""Training-step timings for `tempbench perf`: the real `train_step` on synthetic resident uint8 images.

Rows, all from one process and interleaved (one timed block of every configuration per round, median over rounds,
so drift in the machine's speed hits every configuration alike):
- "encoder": the bare encoder forward + backward on pre-made float views (2B, C, S, S): the pace of the hardware;
- "augment": `TwoViewAugment` alone on a resident uint8 batch;
- "step <strategy>": the full `train_step` (augment + encoder + strategy + optimiser + schedule + update).
Derived: strategy overhead = step ÷ step `fixed`; pipeline efficiency = encoder ÷ step `fixed` (a throughput ratio);
views/s = 2B ÷ step `fixed`.

Only torch, torchvision and numpy are imported, so this runs on a bare GPU machine.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from tempbench.config import resolve_run_config
from tempbench.datasets import ImageDataset
from tempbench.strategies import Clock
from tempbench.train import Setup, setup_from_data, train_step

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # the cifar10 card's statistics
# the measured configurations: the CPU goal is stated for the small CNN, the GPU goal for ResNet-18 (CIFAR stem, bf16)
DEVICE_DEFAULTS = {"cpu": {"encoder": "small_cnn", "batch_size": 256},
                   "cuda": {"encoder": "resnet18", "batch_size": 512}}


@dataclass
class StepBench:
    """What to time: encoder, batch, image side, strategies, rounds (each a block of `steps` steps per config)."""

    device: torch.device
    encoder: str
    batch_size: int
    strategies: Sequence[str]
    rounds: int = 10
    warmup: int = 2  # untimed rounds first: allocator, cuDNN algorithm choice, torch.compile
    steps: int = 1  # steps per timed block; > 1 on CUDA so kernel launches overlap as in a real epoch
    image_size: int = 32
    num_images: int = 50_000  # resident training set (CIFAR-10's size)
    compile: bool = False
    seed: int = 0
    progress: bool = False  # a bar per timed section on stderr (the full table takes minutes)


def synthetic_dataset(num_images: int, image_size: int = 32, channels: int = 3, num_classes: int = 10,
                      seed: int = 0) -> Any:
    """An `ImageDataset` of random uint8 images (CIFAR-10's shape and statistics, the SimCLR recipe): what a run's
    step sees, without reading a dataset."""

    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (num_images, channels, image_size, image_size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(num_classes, (num_images,), generator=gen)
    empty = torch.empty((0, channels, image_size, image_size), dtype=torch.uint8)
    return ImageDataset(name="synthetic", source="synthetic", origin="random uint8", train_images=images,
                        train_labels=labels, test_images=empty, test_labels=labels[:0],
                        train_indices=torch.arange(num_images), classes=[str(c) for c in range(num_classes)],
                        class_counts=torch.bincount(labels, minlength=num_classes).tolist(), lt_hash="",
                        long_tail=None, mean=CIFAR_MEAN[:channels], std=CIFAR_STD[:channels], augment="simclr",
                        image_size=image_size)


def step_settings(bench: StepBench) -> dict[str, Any]:
    """The run settings every timed setup shares. threads: the process's count (--threads), so every row times the
    same one (a run's own calibration would pick per setup)."""
    return {"encoder": bench.encoder, "batch_size": bench.batch_size, "device": str(bench.device), "progress": False,
            "seed": bench.seed, "threads": torch.get_num_threads()}


def build_setups(bench: StepBench, data: Any) -> dict[str, Setup]:
    """One Setup per strategy, as `build_setup` makes it (same seed, so the same initial encoder), sharing one
    resident copy of the images."""
    setups: dict[str, Setup] = {}
    for name in tqdm(bench.strategies, desc="views setups", unit="setup", disable=not bench.progress, leave=False,
                     file=sys.stderr):
        config = resolve_run_config(name, "cifar10", settings={  # CIFAR-10-shaped synthetic images
            **step_settings(bench), "compile": bench.compile})
        torch.manual_seed(bench.seed)
        setup = setup_from_data(config, data, bench.device)
        if setups:
            setup.train.images = next(iter(setups.values())).train.images  # one resident copy is enough
        setups[name] = setup
    return setups


def encoder_step(setup: Setup, views: torch.Tensor) -> None:
    """The bare encoder forward + backward on pre-made views, under the autocast `train_step` uses."""
    with torch.autocast(device_type=setup.device.type, dtype=torch.bfloat16, enabled=setup.bf16):
        z = setup.model(views)
    # any scalar of z does: the backward through the encoder costs the same whatever the loss, and this one is free
    z.float().square().mean().backward()
    setup.model.zero_grad(set_to_none=True)


def step_closures(bench: StepBench, setups: dict[str, Setup]) -> dict[str, Callable[[int], None]]:
    """name -> fn(step): one step of that configuration. Every configuration sees the same batch indices."""
    first = next(iter(setups.values()))
    aug_gen = torch.Generator(device=bench.device).manual_seed(bench.seed)
    perm_gen = torch.Generator().manual_seed(bench.seed)
    n = len(first.train.images)
    batches = [torch.randperm(n, generator=perm_gen)[:bench.batch_size].to(bench.device) for _ in range(4)]
    # made once: the "encoder" row times the network alone, so pipeline efficiency shows what the rest of a step adds
    views = torch.cat(first.augment(first.train.images[batches[0]], aug_gen))
    if first.bf16:  # the layout train_step hands the encoder under bf16
        views = views.contiguous(memory_format=torch.channels_last)

    def step_of(setup: Setup) -> Callable[[int], None]:
        spe = setup.steps_per_epoch
        return lambda i: train_step(setup, batches[i % 4], Clock(step=i, epochs=setup.config.epochs,
                                                                steps_per_epoch=spe), aug_gen)

    fns: dict[str, Callable[[int], None]] = {
        "encoder": lambda i: encoder_step(first, views),
        "augment": lambda i: first.augment(first.train.images[batches[i % 4]], aug_gen),
    }
    fns.update({f"step {name}": step_of(setup) for name, setup in setups.items()})
    return fns


def timing_bar(total: int, desc: str, progress: bool, unit: str = "round") -> Any:
    """A progress bar with an ETA on stderr over `total` rounds (or rows) of a timed section; advanced between
    timed blocks only, never inside one."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not progress, leave=False, file=sys.stderr)


def interleaved_medians(fns: dict[str, Callable[[int], None]], rounds: int, warmup: int, steps: int,
                        device: torch.device, progress: bool = False, desc: str = "timing") -> dict[str, list[float]]:
    """Seconds per step of each fn in every timed round: one block of `steps` calls of each fn per round, with the
    device synchronised around the block only (never inside it). The order rotates by one every round, so no
    configuration always runs right after the same neighbour (caches, allocator, clock boost). `progress`: a bar
    labelled `desc` over the rounds."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in fns}
    names, step = list(fns), 0
    with timing_bar(warmup + rounds, f"{desc} ({len(fns)} rows)", progress) as bar:
        for r in range(warmup + rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                sync()
                start = time.perf_counter()
                for j in range(steps):
                    fns[name](step + j)
                sync()
                if r >= warmup:
                    times[name].append((time.perf_counter() - start) / steps)
            step += steps
            bar.update(1)
    return times


def time_training(bench: StepBench) -> dict[str, Any]:
    """Run the interleaved timing and summarise it: per-row ms and spread, the three ratios, throughput."""
    data = synthetic_dataset(bench.num_images, bench.image_size, seed=bench.seed)
    setups = build_setups(bench, data)
    times = interleaved_medians(step_closures(bench, setups), bench.rounds, bench.warmup, bench.steps, bench.device,
                                progress=bench.progress, desc="views steps")
    return summarise(bench, times)


def summarise(bench: StepBench, times: dict[str, list[float]]) -> dict[str, Any]:
    """Medians (ms), interquartile spread, strategy overhead, pipeline efficiency and views/s."""
    med = {name: statistics.median(t) for name, t in times.items()}
    views = 2 * bench.batch_size
    rows = []
    for name, t in times.items():
        # "inclusive": the quartiles stay within the measured times (one round: no spread at all)
        q = statistics.quantiles(t, n=4, method="inclusive") if len(t) > 1 else [t[0]] * 3
        row = {"name": name, "ms": 1e3 * med[name], "ms_q25": 1e3 * q[0], "ms_q75": 1e3 * q[2],
               "views_per_s": views / med[name]}
        if name.startswith("step "):
            row["overhead_vs_fixed"] = med[name] / med["step fixed"]
        rows.append(row)
    return {"encoder": bench.encoder, "batch_size": bench.batch_size, "views_per_step": views,
            "image_size": bench.image_size, "precision": "bf16 autocast" if bench.device.type == "cuda" else "float32",
            "channels_last": bench.device.type == "cuda", "compile": bench.compile, "rounds": bench.rounds,
            "steps_per_round": bench.steps, "num_images": bench.num_images, "rows": rows,
            "pipeline_efficiency": med["encoder"] / med["step fixed"],
            "augment_share": med["augment"] / med["step fixed"],
            "views_per_s": views / med["step fixed"]}
