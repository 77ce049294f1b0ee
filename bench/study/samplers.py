"""How a study chooses its points: a space-filling design for sensitivity (Sobol via Optuna's QMCSampler, or the
strategy's grid via GridSampler), TPE for tuning; and which pruner stops trials early (none unless asked).

Every worker builds the same sampler from the same seed: the Sobol sequence and the grid order must be one design
shared by all workers, whatever machine they run on. Trial k gets design point k (trial numbers are unique and
assigned by the storage), so workers never draw the same point and a resumed study continues the sequence.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from .storage import quiet_experimental

GOALS = ("sensitivity", "tune")


class SobolSampler(optuna.samplers.QMCSampler):
    """Optuna's QMCSampler (Sobol, scrambled, seeded) with two changes that make it a design:

    - the search space is given up front, so trial 0 is a Sobol point too (QMCSampler samples the first trial at
      random and infers the space from it);
    - trial k takes point k of the sequence. QMCSampler keeps its own counter in a study attribute that is read and
      written without a transaction (its TODO says so: it "only ensures that each sample_id is sampled at least
      once"), so two workers starting at the same moment draw the same point.
    """

    def __init__(self, space: dict[str, BaseDistribution], seed: int) -> None:
        with quiet_experimental():
            super().__init__(qmc_type="sobol", scramble=True, seed=seed,
                             # only for a parameter outside the given space; seeded so even that is reproducible
                             independent_sampler=optuna.samplers.RandomSampler(seed=seed))
        self._space = dict(space)
        self._point = 0

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, BaseDistribution]:
        """The space given up front, for every trial (the first included)."""
        return dict(self._space)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """{param: value} of point `trial.number` of the scrambled Sobol sequence, mapped onto `search_space`."""
        self._point = trial.number  # read by _find_sample_id below (one trial at a time per worker: n_jobs=1)
        return super().sample_relative(study, trial, search_space)

    def _find_sample_id(self, study: Any, search_space: dict[str, BaseDistribution]) -> int:
        return self._point


def describe_sampler(goal: str, grid: bool, seed: int, prune: bool) -> str:
    """What the report calls the design: the sampler as it was, and the pruner."""
    if grid:
        sampler = "GridSampler (the grid below, every point once)"
    elif goal == "tune":
        sampler = f"TPESampler (seed {seed}; tuning, not a sensitivity design)"
    else:
        sampler = f"QMCSampler (Sobol, scrambled, seed {seed}; trial k = point k)"
    return f"{sampler}; {'MedianPruner on the validation monitor' if prune else 'no pruning'}"


def make_sampler(goal: str, grid: dict[str, list] | None, space: dict[str, BaseDistribution] | None, seed: int,
                 worker_seed: int) -> Any:
    """The sampler of one worker. `worker_seed` (distinct per worker and restart) seeds TPE only: its random
    start-up points must differ between workers, while a design (Sobol, grid) must be the same for all."""
    if grid is not None:
        return optuna.samplers.GridSampler(grid, seed=seed)
    if goal == "tune":
        return optuna.samplers.TPESampler(seed=worker_seed)
    return SobolSampler(space or {}, seed=seed)


def make_pruner(prune: bool) -> Any:
    """MedianPruner on the per-epoch validation monitor with `prune`, else none: a sensitivity design must see
    every point's final value, so pruning is opt-in."""
    if not prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)  # epoch 0 is mostly noise


def search_distributions(space_fn: Any, epochs: int | None, extra_space: Any = None) -> dict[str, BaseDistribution]:
    """The distributions a strategy's `search_space` (plus `extra_space`) suggests, found by running it once on a
    throwaway in-memory trial: QMCSampler needs the space before the first trial."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    space_fn(trial, epochs=epochs)
    if extra_space is not None:
        extra_space(trial)
    return dict(trial.distributions)
