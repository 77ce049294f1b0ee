"""Shared machinery of the strategies that use one global τ with the NT-Xent loss (fixed, learnable, schedules)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Step, StepOut, Strategy
from .losses import nt_xent


class GlobalTauStrategy(Strategy):
    """NT-Xent (algorithms.md, `fixed`) with a global τ given by `tau_at(step)`.

    Subclasses implement `tau_at(step)` (a float, or a scalar tensor when τ is learnable) and `tau_bounds()`.
    The τ used last is kept in the buffer `last_tau`, so `temperatures()` needs no step.
    """

    def __init__(self, num_samples: int, config: object) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("last_tau", torch.tensor(self.initial_tau()))

    def initial_tau(self) -> float:
        """τ before the first step (what `temperatures()` reports until `update` runs)."""
        return float(self.tau_at(Step()))

    def tau_at(self, step: Step) -> Tensor | float:
        raise NotImplementedError

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, step: Step) -> StepOut:
        tau = self.tau_at(step)
        loss = nt_xent(z1, z2, tau)
        tau_now = torch.as_tensor(tau, dtype=z1.dtype, device=z1.device).detach()
        return StepOut(loss=loss, tau=tau_now.expand(z1.shape[0]), logs={"tau": tau_now}, saved={"tau": tau_now})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, step: Step) -> None:
        self.last_tau.copy_(out.saved["tau"])

    def temperatures(self) -> Tensor:
        return self.last_tau.expand(self.num_samples).clone()
