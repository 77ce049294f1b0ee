"""`fixed`: one constant global temperature. Views: SimCLR's NT-Xent (Chen et al., ICML 2020); image_text: CLIP's
symmetric cross-entropy (Radford et al., ICML 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from .base import Clock, check_range
from .bimodal_losses import clip_loss
from .global_tau import GlobalTauStrategy
from .registry import register_strategy


@dataclass(frozen=True)
class FixedConfig:
    tau: float = 0.2  # 0.5 is the other common CIFAR choice

    def __post_init__(self) -> None:
        check_range("tau", self.tau, 0.0, None, low_open=True)


@register_strategy("fixed")
class Fixed(GlobalTauStrategy):
    """L = (1/2B) Σ_a −log(exp(s⁺_a/τ) / Σ_{c ≠ a} exp(s_ac/τ)) over 2B anchors; the denominator holds the positive."""

    Config = FixedConfig
    tau_hyperparameters = ("tau",)

    def tau_at(self, clock: Clock) -> float:
        return self.config.tau

    def tau_bounds(self) -> tuple[float, float]:
        return (self.config.tau, self.config.tau)

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None) -> dict[str, Any]:
        return {"tau": trial.suggest_float("tau", 0.05, 1.0, log=True)}

    @classmethod
    def search_grid(cls, *, epochs: int | None = None) -> dict[str, list[Any]]:
        return {"tau": [0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]}


@dataclass(frozen=True)
class FixedImageTextConfig:
    tau: float = 0.01  # the iSogCLR authors' CLIP baseline (--temp 0.01); OpenCLIP's 0.07 is an initial value

    def __post_init__(self) -> None:
        check_range("tau", self.tau, 0.0, None, low_open=True)


@register_strategy("fixed", pairing="image_text")
class FixedImageText(Fixed):
    """CLIP's symmetric cross-entropy (Radford et al., ICML 2021) with one constant τ:
    L = ½[mean_i −log softmax_j(S_ij/τ)_i + mean_i −log softmax_j(S_ji/τ)_i]; the positive is in each denominator."""

    Config = FixedImageTextConfig

    def loss(self, z1: Tensor, z2: Tensor, tau: Tensor | float) -> Tensor:
        return clip_loss(z1, z2, tau)

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None) -> dict[str, Any]:
        return {"tau": trial.suggest_float("tau", 0.005, 0.2, log=True)}

    @classmethod
    def search_grid(cls, *, epochs: int | None = None) -> dict[str, list[Any]]:
        return {"tau": [0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1]}
