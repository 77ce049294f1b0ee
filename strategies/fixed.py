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
    # brackets SimCLR's CIFAR choices 0.2 and 0.5 and its sweep from 0.05 to 1.0 (Chen et al. 2020), and reaches
    # below the smallest τ a per-sample views strategy may search (`tau_free`'s τ_eff ~ 0.017 at scale 8)
    space = frozen(tau=log_uniform(0.01, 1.0))
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
    # CLIP's scale: brackets the iSogCLR authors' 0.01 and OpenCLIP's 0.07 start, and reaches below the smallest τ_min
    # a per-sample image_text strategy may search (0.003: `isogclr`, `dystress`, `tau_uncertainty`'s t)
    space = frozen(tau=log_uniform(0.002, 0.2))
    grid = frozen(tau=(0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1))
