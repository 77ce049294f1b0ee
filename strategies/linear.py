"""`linear`: τ moves linearly from `tau_start` to `tau_end` over the run (a heuristic schedule baseline)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Clock
from .global_tau import GlobalTauStrategy
from .registry import register_strategy
from .spec import check_range, frozen, log_uniform


@dataclass(frozen=True)
class LinearConfig:
    """`linear`: τ at the start and at the end of the run."""

    tau_start: float = 0.5
    tau_end: float = 0.1

    def __post_init__(self) -> None:
        check_range("tau_start", self.tau_start, 0.0, None, low_open=True)
        check_range("tau_end", self.tau_end, 0.0, None, low_open=True)


@register_strategy("linear")
class Linear(GlobalTauStrategy):
    """τ(t) = τ_start + (τ_end − τ_start) · t / E, t in fractional epochs, E the run's epochs (held at τ_end after)."""

    Config = LinearConfig
    tau_hyperparameters = ("tau_start", "tau_end")
    space = frozen(tau_start=log_uniform(0.2, 1.0), tau_end=log_uniform(0.05, 0.3))
    grid = frozen(tau_start=(0.3, 0.5, 1.0), tau_end=(0.05, 0.1, 0.2))

    def tau_at(self, clock: Clock) -> float:
        """τ(t) at t = `clock.epoch_float` of `clock.epochs`."""
        frac = min(clock.epoch_float / clock.epochs, 1.0)
        return self.config.tau_start + (self.config.tau_end - self.config.tau_start) * frac
