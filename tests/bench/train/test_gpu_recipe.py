"""The code path a GPU user takes, exercised on the CPU: the paper recipe (ResNet-18 with the CIFAR stem, LARS,
bf16 autocast, channels_last) resolved from the shipped suite, 2 training steps with every strategy of the suite.
The batch is 16 instead of the recipe's 512 (two ResNet-18 steps at 512 take minutes on 2 cores)."""

from __future__ import annotations

import torch

from tempbench.config import load_suite
from tempbench.perf.train import synthetic_dataset
from tempbench.strategies import Clock
from tempbench.train import setup_from_data, train_step


def test_paper_recipe_trains_two_steps_under_bf16_autocast_on_the_cpu() -> None:
    suite = load_suite("paper-cifar10-lt")
    config = next(c for c in suite.configs(seeds=[0], device="cpu", precision="bf16", batch_size=8,
                                           threads=1)
                  if c.strategy == "isogclr")
    assert config.encoder == "resnet18" and config.optimizer == "lars" and config.epochs == 400
    setup = setup_from_data(config, synthetic_dataset(16, image_size=16), torch.device("cpu"))
    assert setup.bf16 and setup.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    before = setup.strategy.temperatures().clone()
    for step in range(2):
        out = train_step(setup, torch.arange(step * 8, (step + 1) * 8), Clock(step=step, epochs=400,
                                                                                steps_per_epoch=2), gen)
        assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert not torch.equal(setup.strategy.temperatures(), before)  # the τ update ran
