"""`learnable`: one global τ trained by backprop, CLIP style (Radford et al., 2021; open_clip's logit scale), with
SimCLR's NT-Xent for views and CLIP's cross-entropy for image_text."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import Clock, StepOut
from .global_tau import GlobalTauStrategy
from .registry import register_strategy
from .spec import check_range, frozen, log_uniform


@dataclass(frozen=True)
class LearnableConfig:
    """`learnable`: where τ starts, its clamp and θ's learning rate (open_clip's τ_init 0.07 and τ >= 0.01)."""

    tau_init: float = 0.07
    tau_min: float = 0.01  # i.e. logit scale <= 100
    tau_max: float = 1.0
    tau_lr: float = 0.01  # learning rate of θ = log(1/τ), in its own optimiser group without weight decay

    def __post_init__(self) -> None:
        check_range("tau_min", self.tau_min, 0.0, None, low_open=True)
        check_range("tau_max", self.tau_max, self.tau_min, None)
        check_range("tau_init", self.tau_init, self.tau_min, self.tau_max)
        check_range("tau_lr", self.tau_lr, 0.0, None)


@register_strategy("learnable")
class Learnable(GlobalTauStrategy):
    """NT-Xent with τ = exp(−θ); θ is an `nn.Parameter` clamped to [log(1/τ_max), log(1/τ_min)] after every step."""

    Config = LearnableConfig
    learnable = True  # θ trains in its own group at `tau_lr` (`param_group()`)
    tau_hyperparameters = ("tau_init", "tau_min", "tau_max")
    space = frozen(tau_init=log_uniform(0.02, 0.5), tau_lr=log_uniform(1e-4, 1e-1))
    grid = frozen(tau_init=(0.05, 0.1, 0.2, 0.5), tau_lr=(1e-3, 1e-2, 1e-1))

    def __init__(self, num_samples: int, config: LearnableConfig) -> None:
        super().__init__(num_samples, config)
        # θ = log(1/τ) (open_clip's logit scale) rather than τ: multiplicative steps, and τ > 0 for free
        self.log_inv_tau = nn.Parameter(torch.tensor(math.log(1.0 / config.tau_init)))

    def initial_tau(self) -> float:
        """τ_init."""
        return self.config.tau_init  # asked before θ exists; and τ_init exactly, not exp(−θ) of a float32 θ

    def tau_at(self, clock: Clock) -> Tensor:
        """exp(−θ), a 0-d tensor that carries θ's gradient."""
        return torch.exp(-self.log_inv_tau)

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """Clamp θ after the optimiser's step (open_clip clamps the logit scale the same way) and record τ."""
        self.log_inv_tau.clamp_(math.log(1.0 / self.config.tau_max), math.log(1.0 / self.config.tau_min))
        self.last_tau.copy_(torch.exp(-self.log_inv_tau))


@register_strategy("learnable", pairing="image_text")
class LearnableImageText(Learnable):
    """CLIP's symmetric cross-entropy with τ = exp(−θ) as open_clip trains it: θ starts at log(1/0.07) and is
    clamped to [0, ln 100] (τ ∈ [0.01, 1]) after every optimiser step, in its own group without weight decay.
    Everything but the loss (`GlobalTauStrategy.loss` picks it by pairing) is the views class's."""
