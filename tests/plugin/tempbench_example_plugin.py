"""A third-party strategy, shipped as its own distribution and found through the `tempbench.strategies` entry point.

It implements the decoupled contrastive loss (Yeh et al., "Decoupled Contrastive Learning", ECCV 2022): NT-Xent
without the positive in the denominator. The test suite puts this folder on sys.path; its `.dist-info` declares:

    [tempbench.strategies]
    example_decoupled = tempbench_example_plugin:Decoupled
    example_decoupled_pairs = tempbench_example_plugin:DecoupledImageText
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tempbench.strategies import Clock, StepOut, Strategy
from tempbench.strategies.losses import non_negative_mask, similarity_matrix


@dataclass(frozen=True)
class DecoupledConfig:
    tau: float = 0.2

    def __post_init__(self) -> None:
        if self.tau <= 0:
            raise ValueError(f"tau must be in (0, inf), got {self.tau!r}")


class Decoupled(Strategy):
    """L = mean over 2B anchors of −s⁺/τ + log Σ_{2B−2 negatives} exp(s/τ), one constant τ.

    Written to the slim contract: a Config, `compute`, and declarations. `temperatures()` comes from the buffer
    named `tau` (the base's `tau_buffer`) and `tau_bounds()` from the declared τ field; no state, so no `update`.
    """

    Config = DecoupledConfig
    tau_hyperparameters = ("tau",)

    def __init__(self, num_samples: int, config: DecoupledConfig) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("tau", torch.tensor(config.tau))

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, step: Clock) -> StepOut:
        batch = z1.shape[0]
        logits = similarity_matrix(z1, z2) / self.config.tau
        negatives = logits.masked_fill(non_negative_mask(batch, z1.device), float("-inf"))
        positive = (z1 * z2).sum(dim=1) / self.config.tau
        loss = (torch.logsumexp(negatives, dim=1) - torch.cat([positive, positive])).mean()
        tau = torch.full((batch,), self.config.tau, dtype=z1.dtype, device=z1.device)
        return StepOut(loss=loss, tau=tau, logs={"tau": tau[0]})


class DecoupledImageText(Decoupled):
    """The same loss for image–caption pairs: each image anchor against the other captions, each caption anchor
    against the other images. Its `pairing` attribute is what the registry files it under."""

    pairing = "image_text"

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, step: Clock) -> StepOut:
        batch = z1.shape[0]
        sim = z1 @ z2.T / self.config.tau
        eye = torch.eye(batch, dtype=torch.bool, device=z1.device)
        rows = torch.cat([sim, sim.T]).masked_fill(eye.repeat(2, 1), float("-inf"))
        loss = (torch.logsumexp(rows, dim=1) - sim.diagonal().repeat(2)).mean()
        tau = torch.full((batch, 2), self.config.tau, dtype=z1.dtype, device=z1.device)
        return StepOut(loss=loss, tau=tau, logs={"tau": tau[0, 0]})
