"""Image–text training-step timings for `tempbench perf`: each `image_text` strategy's full `train_step` (one
augmented view per image, image tower, text tower on frozen caption embeddings, strategy, optimiser, update) ÷ the
same step with `fixed`, interleaved as the views rows are. The images are random uint8 at Flickr8k's 64 px and the
text tower embeds captions with the "random" stand-in (the step's cost does not depend on what the frozen
embeddings are), so this runs without the `text` extra and without data.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

import torch
from tqdm.auto import tqdm

from tempbench.config import resolve_run_config
from tempbench.datasets import CaptionDataset
from tempbench.strategies import Clock, list_strategies
from tempbench.train import Setup, setup_from_data, train_step

from .train import CIFAR_MEAN, CIFAR_STD, StepBench, interleaved_medians, step_settings

CAPTIONS_PER_IMAGE = 5  # as Flickr8k, Flickr30k and COCO
IMAGE_SIZE = 64  # the shared Flickr8k copy's side (px)


def synthetic_captions(num_images: int, image_size: int = IMAGE_SIZE, seed: int = 0) -> CaptionDataset:
    """Random uint8 images, 5 placeholder captions each, every image but one in the train split."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (num_images, 3, image_size, image_size), dtype=torch.uint8, generator=gen)
    caption_image = torch.arange(num_images).repeat_interleave(CAPTIONS_PER_IMAGE)
    train, test = torch.arange(num_images - 1), torch.tensor([num_images - 1])  # a split may not be empty
    return CaptionDataset(name="synthetic", source="synthetic", origin="random uint8", images=images,
                          captions=[f"caption {i}" for i in range(len(caption_image))], caption_image=caption_image,
                          splits={"train": train, "val": torch.zeros(0, dtype=torch.int64), "test": test},
                          mean=CIFAR_MEAN,
                          std=CIFAR_STD, augment="clip", image_size=image_size)


def image_text_setups(bench: StepBench, data: CaptionDataset) -> dict[str, Setup]:
    """name -> Setup of every registered `image_text` strategy, `fixed` first (the ratios' base), each with Flickr8k's
    run config, the "random" text tower and AdamW (the image–text suites' optimiser); the same torch seed before each,
    so every strategy starts from the same towers."""
    setups = {}
    names = ["fixed", *[n for n in list_strategies(pairing="image_text") if n != "fixed"]]
    for name in tqdm(names, desc="image–text setups", unit="setup", disable=not bench.progress, leave=False,
                     file=sys.stderr):
        config = resolve_run_config(name, "flickr8k", settings={
            **step_settings(bench), "text_tower": "random", "optimizer": "adamw", "lr": 1e-3})
        torch.manual_seed(bench.seed)
        setups[name] = setup_from_data(config, data, bench.device)
    return setups


def time_image_text(bench: StepBench) -> dict[str, Any]:
    """Medians (ms) of every image_text strategy's step and its ratio to `fixed`'s."""
    # at least enough training pairs for the four distinct batches cycled below
    setups = image_text_setups(bench, synthetic_captions(max(bench.num_images // 10, 4 * bench.batch_size)))
    gen = torch.Generator(device=bench.device).manual_seed(bench.seed)
    first = next(iter(setups.values()))
    order = first.pairing.epoch_order(first.train, first.config.seed, 0).to(bench.device)
    batches = [order[i * bench.batch_size:(i + 1) * bench.batch_size] for i in range(4)]

    def step_of(setup: Setup) -> Any:
        return lambda i: train_step(setup, batches[i % 4], Clock(step=i, epochs=2, steps_per_epoch=4), gen)

    times = interleaved_medians({f"pair {n}": step_of(s) for n, s in setups.items()}, bench.rounds, bench.warmup,
                                bench.steps, bench.device, progress=bench.progress, desc="image–text steps")
    base = statistics.median(times["pair fixed"])
    rows = [{"name": name, "ms": 1e3 * statistics.median(t), "overhead_vs_fixed": statistics.median(t) / base}
            for name, t in times.items()]
    return {"encoder": bench.encoder, "batch_size": bench.batch_size, "image_size": IMAGE_SIZE,
            "text_tower": "frozen embeddings (random stand-in) + projector", "rows": rows}
