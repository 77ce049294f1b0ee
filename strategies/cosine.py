"""`cosine`: τ follows a cosine of the epoch (Kukleva et al., "Temperature Schedules for Self-Supervised Contrastive
Methods on Long-Tail Data", ICLR 2023)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .base import Clock
from .global_tau import GlobalTauStrategy
from .registry import register_strategy
from .spec import check_range, frozen, log_uniform, uniform


@dataclass(frozen=True)
class CosineConfig:
    """`cosine`: the schedule's bounds (the paper's τ_min 0.1, τ_max 1.0) and period."""

    tau_min: float = 0.1
    tau_max: float = 1.0
    period_epochs: float | None = None  # None: 20 % of the run, the paper's ratio (T = 400 of 2000 epochs)

    def __post_init__(self) -> None:
        check_range("tau_min", self.tau_min, 0.0, None, low_open=True)
        check_range("tau_max", self.tau_max, self.tau_min, None)
        if self.period_epochs is not None:
            check_range("period_epochs", self.period_epochs, 0.0, None, low_open=True)


@register_strategy("cosine")
class Cosine(GlobalTauStrategy):
    """τ(t) = τ_min + ½(τ_max − τ_min)(1 + cos(2π t / T)), t in fractional epochs; starts at τ_max."""

    Config = CosineConfig
    tau_hyperparameters = ("tau_min", "tau_max")
    space = frozen(tau_min=log_uniform(0.05, 0.3), tau_max=uniform(0.5, 1.0))
    grid = frozen(tau_min=(0.05, 0.1, 0.2), tau_max=(0.5, 1.0))

    def tau_at(self, clock: Clock) -> float:
        """τ(t) at t = `clock.epoch_float`; T = `period_epochs`, or a fifth of `clock.epochs`."""
        c = self.config
        period = c.period_epochs if c.period_epochs is not None else 0.2 * clock.epochs
        return c.tau_min + 0.5 * (c.tau_max - c.tau_min) * (1.0 + math.cos(2.0 * math.pi * clock.epoch_float / period))

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None, batch_size: int | None = None) -> dict[str, Any]:
        """`space`, plus the period as a fraction of the run when its length is known (the batch plays no part)."""
        space = super().search_space(trial, epochs=epochs, batch_size=batch_size)
        if epochs is not None:
            space["period_epochs"] = epochs * trial.suggest_float("period_fraction", 0.1, 0.5)
        return space
