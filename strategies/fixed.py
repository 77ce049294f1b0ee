"""`fixed`: one constant global temperature. Views: SimCLR's NT-Xent (Chen et al., ICML 2020); image_text: CLIP's
symmetric cross-entropy (Radford et al., ICML 2021)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Clock
from .global_tau import GlobalTauStrategy
from .registry import register_strategy
from .spec import check_range, frozen, log_uniform


@dataclass(frozen=True)
class FixedConfig:
    """`fixed` (views): the one τ."""

    tau: float = 0.2  # 0.5 is the other common CIFAR choice

    def __post_init__(self) -> None:
        check_range("tau", self.tau, 0.0, None, low_open=True)


@register_strategy("fixed")
class Fixed(GlobalTauStrategy):
    """L = (1/2B) Σ_a −log(exp(s⁺_a/τ) / Σ_{c ≠ a} exp(s_ac/τ)) over 2B anchors; the denominator holds the positive."""

    Config = FixedConfig
    tau_hyperparameters = ("tau",)
    space = frozen(tau=log_uniform(0.05, 1.0))
    grid = frozen(tau=(0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0))

    def tau_at(self, clock: Clock) -> float:
        """τ, whatever the clock."""
        return self.config.tau


@dataclass(frozen=True)
class FixedImageTextConfig:
    """`fixed` (image_text): the one τ, at CLIP's scale."""

    tau: float = 0.01  # the iSogCLR authors' CLIP baseline (--temp 0.01); OpenCLIP's 0.07 is an initial value

    def __post_init__(self) -> None:
        check_range("tau", self.tau, 0.0, None, low_open=True)


@register_strategy("fixed", pairing="image_text")
class FixedImageText(Fixed):
    """CLIP's symmetric cross-entropy (Radford et al., ICML 2021) with one constant τ:
    L = ½[mean_i −log softmax_j(S_ij/τ)_i + mean_i −log softmax_j(S_ji/τ)_i]; the positive is in each denominator."""

    Config = FixedImageTextConfig
    space = frozen(tau=log_uniform(0.005, 0.2))  # CLIP's scale: τ ~ 0.01
    grid = frozen(tau=(0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1))
