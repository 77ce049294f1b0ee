"""`GlobalTauStrategy`: the base of every strategy with one global τ and no per-sample state (fixed, learnable,
schedules), and the class a plug-in author subclasses for a new τ rule or a new loss with a global τ."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Clock, StepOut, Strategy
from .losses import nt_xent


class GlobalTauStrategy(Strategy):
    """A global τ given by `tau_at(clock)` (a float, or a scalar tensor when τ is learnable), fed to `loss`.

    Subclasses implement `tau_at` and `tau_bounds`, and may override `loss` (default: SimCLR's NT-Xent; image_text
    subclasses give CLIP's cross-entropy). The τ used last is kept in the buffer `last_tau`, so `temperatures()` needs
    no clock; it has `tau_shape(N)`, the one τ in every entry.
    """

    def __init__(self, num_samples: int, config: object) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("last_tau", torch.tensor(self.initial_tau()))

    def initial_tau(self) -> float:
        """τ before the first step (what `temperatures()` reports until `update` runs)."""
        return float(self.tau_at(Clock()))

    def tau_at(self, clock: Clock) -> Tensor | float:
        raise NotImplementedError

    def loss(self, z1: Tensor, z2: Tensor, tau: Tensor | float) -> Tensor:
        """Scalar loss of normalised (B, d) features (two views, or image and text) at temperature `tau`; default
        NT-Xent."""
        return nt_xent(z1, z2, tau)

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        tau = self.tau_at(clock)
        loss = self.loss(z1, z2, tau)
        tau_now = torch.as_tensor(tau, dtype=z1.dtype, device=z1.device).detach()
        return StepOut(loss=loss, tau=tau_now.expand(self.tau_shape(z1.shape[0])), logs={"tau": tau_now},
                       saved={"tau": tau_now})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        self.last_tau.copy_(out.saved["tau"])

    def temperatures(self) -> Tensor:
        return self.last_tau.expand(self.tau_shape(self.num_samples)).clone()
