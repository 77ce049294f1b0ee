"""`fixed`: SimCLR's NT-Xent with one constant global temperature (Chen et al., ICML 2020)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Step, check_range
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

    def tau_at(self, step: Step) -> float:
        return self.config.tau

    def tau_bounds(self) -> tuple[float, float]:
        return (self.config.tau, self.config.tau)

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None) -> dict[str, Any]:
        return {"tau": trial.suggest_float("tau", 0.05, 1.0, log=True)}

    @classmethod
    def search_grid(cls, *, epochs: int | None = None) -> dict[str, list[Any]]:
        return {"tau": [0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]}
