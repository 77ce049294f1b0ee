"""`step`: piecewise-constant τ from (epoch, τ) milestones (a heuristic schedule baseline)."""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Any

from .base import Clock
from .global_tau import GlobalTauStrategy
from .registry import register_strategy
from .spec import check_range

Milestones = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class StepConfig:
    """`step`: the (epoch, τ) milestones."""

    # (epoch, τ) pairs, epochs ascending; τ of the last milestone at or before the current epoch applies (the first
    # one's before it). None: 0.5, then 0.2 from half the run, then 0.1 from three quarters (like LR step decay).
    milestones: Milestones | None = None

    def __post_init__(self) -> None:
        if self.milestones is None:
            return
        try:
            pairs = tuple((float(e), float(t)) for e, t in self.milestones)
        except (TypeError, ValueError):
            raise ValueError(f"milestones must be a list of (epoch, tau) pairs, got {self.milestones!r}") from None
        if not pairs:
            raise ValueError("milestones must hold at least one (epoch, tau) pair")
        for epoch, tau in pairs:
            check_range("milestones epoch", epoch, 0.0, None)
            check_range("milestones tau", tau, 0.0, None, low_open=True)
        if any(a[0] >= b[0] for a, b in itertools.pairwise(pairs)):
            raise ValueError(f"milestones epochs must be strictly ascending, got {pairs}")
        object.__setattr__(self, "milestones", pairs)


def default_milestones(epochs: int) -> Milestones:
    """The milestones of a run of `epochs` when none are given: τ 0.5, 0.2 from half the run, 0.1 from 3/4."""
    return ((0.0, 0.5), (0.5 * epochs, 0.2), (0.75 * epochs, 0.1))


@register_strategy("step")
class StepSchedule(GlobalTauStrategy):
    """τ(t) = τ_k for the last milestone (e_k, τ_k) with e_k <= t, t in fractional epochs."""

    Config = StepConfig
    tau_hyperparameters = ("milestones",)

    @classmethod
    def pinned_tau_hyperparameters(cls, tau: float) -> dict[str, Any]:
        """One milestone: τ = `tau` from epoch 0 on (milestones are not a float the default could set)."""
        return {"milestones": ((0.0, tau),)}

    def milestones(self, epochs: int) -> Milestones:
        """The configured (epoch, τ) milestones, or the defaults for a run of `epochs`."""
        return self.config.milestones if self.config.milestones is not None else default_milestones(epochs)

    def tau_at(self, clock: Clock) -> float:
        """τ of the last milestone at or before `clock.epoch_float` (the first one's before it)."""
        pairs = self.milestones(clock.epochs)
        k = bisect.bisect_right([e for e, _ in pairs], clock.epoch_float) - 1
        return pairs[max(k, 0)][1]

    def tau_bounds(self) -> tuple[float, float]:
        """The smallest and largest milestone τ."""
        taus = [t for _, t in self.milestones(1)]  # the default milestones' τ do not depend on the run's length
        return (min(taus), max(taus))

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None, batch_size: int | None = None) -> dict[str, Any]:
        """The first and last τ, at the default milestones' epochs (0, E/2, 3E/4); the middle τ is their geometric
        mean. Depends on the run's length E = `epochs` (not on the batch), so it cannot be a `space` declaration."""
        e = epochs if epochs is not None else 1
        start = trial.suggest_float("tau_first", 0.2, 1.0, log=True)
        end = trial.suggest_float("tau_last", 0.05, 0.2, log=True)
        return {"milestones": ((0.0, start), (0.5 * e, (start * end) ** 0.5), (0.75 * e, end))}
