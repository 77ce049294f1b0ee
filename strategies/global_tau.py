"""`GlobalTauStrategy`: the base of every strategy with one global τ and no per-sample state (fixed, learnable,
schedules), and the class a plug-in author subclasses for a new τ rule or a new loss with a global τ."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Clock, StepOut, Strategy
from .bimodal_losses import clip_loss
from .losses import nt_xent

# The loss of a global τ for each pairing: SimCLR's NT-Xent over 2B views (Chen et al., 2020); CLIP's symmetric
# cross-entropy over B image–caption pairs (Radford et al., 2021).
PAIRING_LOSSES = {"views": nt_xent, "image_text": clip_loss}


class GlobalTauStrategy(Strategy):
    """A global τ given by `tau_at(clock)` (a float, or a scalar tensor when τ is learnable), fed to `loss`.

    A subclass writes `tau_at` and may override `loss` (default: NT-Xent for views, CLIP's cross-entropy for
    image_text). The τ used last is kept in the 0-d buffer `last_tau`, so `temperatures()` needs no clock; it
    reports that one τ for every sample.
    """

    tau_buffer = "last_tau"

    def __init__(self, num_samples: int, config: object) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("last_tau", torch.tensor(self.initial_tau()))

    def initial_tau(self) -> float:
        """τ before the first step (what `temperatures()` reports until `update` runs)."""
        return float(self.tau_at(Clock()))

    def tau_at(self, clock: Clock) -> Tensor | float:
        """The τ of the step at `clock`."""
        raise NotImplementedError

    def loss(self, z1: Tensor, z2: Tensor, tau: Tensor | float) -> Tensor:
        """Scalar loss of normalised (B, d) features (two views, or image and text) at temperature `tau`."""
        return PAIRING_LOSSES[self.pairing](z1, z2, tau)

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """`loss` at τ = `tau_at(clock)`; τ is logged and saved for `update`."""
        tau = self.tau_at(clock)
        loss = self.loss(z1, z2, tau)
        tau_now = torch.as_tensor(tau, dtype=z1.dtype, device=z1.device).detach()
        return StepOut(loss=loss, tau=tau_now.expand(self.tau_shape(z1.shape[0])), logs={"tau": tau_now},
                       saved={"tau": tau_now})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """Record the step's τ in `last_tau`."""
        self.last_tau.copy_(out.saved["tau"])
