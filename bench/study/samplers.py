"""How a study chooses its points: a space-filling design for sensitivity (Sobol via Optuna's QMCSampler, or the
strategy's grid via GridSampler), TPE for tuning; and which pruner stops trials early (none unless asked).

Every worker builds the same sampler from the same seed: the Sobol sequence and the grid order must be one design
shared by all workers, whatever machine they run on. A Sobol trial takes the lowest design point no earlier trial
holds (`free_point`): trial k gets point k while no worker dies, so workers never draw the same point and a resumed
study continues the sequence; the point of a trial whose worker was killed is evaluated again (by its retry, which
copies it, or by the next new trial), so the budget's points are points 0..n-1 however many workers die.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from .storage import SURPLUS_ATTR, died, quiet_experimental, retries_left

GOALS = ("sensitivity", "tune")
POINT_ATTR = "tempbench.point"  # trial user attr: the index of its Sobol point (a retry copies it)
PENDING = -1  # the point of a trial that has not drawn one yet


class SobolSampler(optuna.samplers.QMCSampler):
    """Optuna's QMCSampler (Sobol, scrambled, seeded) with two changes that make it a design:

    - the search space is given up front, so trial 0 is a Sobol point too (QMCSampler samples the first trial at
      random and infers the space from it);
    - each trial takes the lowest point no earlier trial holds (`free_point`), recorded as `tempbench.point`.
      QMCSampler keeps its own counter in a study attribute that is read and written without a transaction (its
      TODO says so: it "only ensures that each sample_id is sampled at least once"), so two workers starting at the
      same moment draw the same point, and a point whose worker was killed is never drawn again.
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
        """{param: value} of the trial's point of the scrambled Sobol sequence, mapped onto `search_space`: the
        point it already holds (a retry), else the lowest free one, recorded on the trial before it is used."""
        point = trial.user_attrs.get(POINT_ATTR)
        if point is None:
            point = free_point(study.get_trials(deepcopy=False), trial.number)
            study._storage.set_trial_user_attr(trial._trial_id, POINT_ATTR, point)
        self._point = point  # read by _find_sample_id below (one trial at a time per worker: n_jobs=1)
        return super().sample_relative(study, trial, search_space)

    def _find_sample_id(self, study: Any, search_space: dict[str, BaseDistribution]) -> int:
        return self._point


def free_point(trials: Sequence[Any], number: int) -> int:
    """The point of new trial `number`: the lowest one that no trial numbered before it holds. An earlier trial that
    has not drawn yet is counted as taking the lowest point free at its turn, as it will. A retry queued after a new
    trial took its dead point finds it held by that earlier trial, and `Budget.guard` makes it surplus."""
    taken: set[int] = set()
    for trial in sorted((t for t in trials if t.number < number), key=lambda t: t.number):
        point = held_point(trial)
        if point == PENDING:
            point = _lowest_free(taken)
        if point is not None:
            taken.add(point)
    return _lowest_free(taken)


def held_point(trial: Any) -> int | None:
    """The design point `trial` holds: the one it ran or runs, waits to run (a queued retry) or failed on by itself
    (a NaN: not tried again); None when it holds none (surplus, never drew one, or its worker died and the point is
    to be re-run); PENDING while it is about to draw one."""
    point = trial.user_attrs.get(POINT_ATTR)
    if point is None and not trial.params:  # a new trial, or the retry of one whose worker died before drawing
        return PENDING if trial.state in (TrialState.RUNNING, TrialState.WAITING) else None
    if point is None:  # a trial from before points were recorded: trial k ran point k, a retry its original's
        point = trial.system_attrs.get("failed_trial", trial.number)
    if trial.user_attrs.get(SURPLUS_ATTR) or (died(trial) and retries_left(trial)):
        return None
    return point


def _lowest_free(taken: set[int]) -> int:
    return min(set(range(len(taken) + 1)) - taken)


def describe_sampler(goal: str, grid: bool, seed: int, prune: bool) -> str:
    """What the report calls the design: the sampler as it was, and the pruner."""
    if grid:
        sampler = "GridSampler (the grid below, every point once)"
    elif goal == "tune":
        sampler = f"TPESampler (seed {seed}; tuning, not a sensitivity design)"
    else:
        sampler = f"QMCSampler (Sobol, scrambled, seed {seed}; trial k = point k, a killed worker's point re-run)"
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


def search_distributions(space_fn: Any, epochs: int | None, extra_space: Any = None,
                         batch_size: int | None = None) -> dict[str, BaseDistribution]:
    """The distributions a strategy's `search_space` (plus `extra_space`) suggests, found by running it once on a
    throwaway in-memory trial: QMCSampler needs the space before the first trial. `batch_size`, the run's global
    batch (ρ ranges end below log(B − 1)), is passed only when given, so a `space_fn` that binds it already keeps it."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    space_fn(trial, epochs=epochs, **({} if batch_size is None else {"batch_size": batch_size}))
    if extra_space is not None:
        extra_space(trial)
    return dict(trial.distributions)
