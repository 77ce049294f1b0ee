"""`learnable`: one global τ trained by backprop, CLIP style (Radford et al., 2021; open_clip's logit scale), with
SimCLR's NT-Xent for views and CLIP's cross-entropy for image_text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .base import Clock, StepOut, check_range
from .bimodal_losses import clip_loss
from .global_tau import GlobalTauStrategy
from .registry import register_strategy


@dataclass(frozen=True)
class LearnableConfig:
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
    learnable = True
    tau_hyperparameters = ("tau_init", "tau_min", "tau_max")

    def __init__(self, num_samples: int, config: LearnableConfig) -> None:
        super().__init__(num_samples, config)
        self.log_inv_tau = nn.Parameter(torch.tensor(math.log(1.0 / config.tau_init)))

    def initial_tau(self) -> float:
        return self.config.tau_init

    def tau_at(self, clock: Clock) -> Tensor:
        return torch.exp(-self.log_inv_tau)

    def tau_bounds(self) -> tuple[float, float]:
        return (self.config.tau_min, self.config.tau_max)

    def param_group(self) -> dict[str, float]:
        return {"lr": self.config.tau_lr, "weight_decay": 0.0}

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        self.log_inv_tau.clamp_(math.log(1.0 / self.config.tau_max), math.log(1.0 / self.config.tau_min))
        self.last_tau.copy_(torch.exp(-self.log_inv_tau))

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None) -> dict[str, Any]:
        return {"tau_init": trial.suggest_float("tau_init", 0.02, 0.5, log=True),
                "tau_lr": trial.suggest_float("tau_lr", 1e-4, 1e-1, log=True)}

    @classmethod
    def search_grid(cls, *, epochs: int | None = None) -> dict[str, list[Any]]:
        return {"tau_init": [0.05, 0.1, 0.2, 0.5], "tau_lr": [1e-3, 1e-2, 1e-1]}


@register_strategy("learnable", pairing="image_text")
class LearnableImageText(Learnable):
    """CLIP's symmetric cross-entropy with τ = exp(−θ) as open_clip trains it: θ starts at log(1/0.07) and is
    clamped to [0, ln 100] (τ ∈ [0.01, 1]) after every optimiser step, in its own group without weight decay."""

    def loss(self, z1: Tensor, z2: Tensor, tau: Tensor | float) -> Tensor:
        return clip_loss(z1, z2, tau)
