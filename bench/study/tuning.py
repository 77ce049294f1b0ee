"""The suite's rulesets and controls as runs: the `tuned` ruleset's search and choice, and the τ-matched cells.

Two rulesets, after MLCommons AlgoPerf (Dahl et al., 2023): `defaults` (every strategy as the suite lists it: its
defaults or a named preset) and `tuned` (a suite's `[tuning]` table). In the tuned ruleset every strategy searches its
own declared space (`search_space`) with the same number of points of one scrambled Sobol design, each point trained
at every tuning seed — seeds the leaderboard never reports — and scored on a validation metric; the point with the
best mean is the strategy's choice, which then trains on the reporting seeds and is tested once. Nothing here reads a
test metric: `choose` sees the validation column only.

    plan = TuningPlan.of(suite, settings)           # every tuning run, resolved before the first trains
    ...                                              # sweep plan.configs into OUT/tuning (any sweep machinery)
    choices = plan.choose(read_rows(OUT / "tuning" / "runs.csv"))
    configs = reporting_configs(suite, choices, seeds, settings)   # defaults + tuned cells, each run once
    write_record(OUT, plan, rows, choices)           # tuning.csv (every trial) and rulesets.json beside runs.csv

The τ-matched control (`[controls] tau_matched`): after a per-sample strategy's reporting runs, `fixed` and the
global-τ strategy that shares its estimator (`shares_estimator_with`: `sogclr` for `isogclr`) train at that
strategy's achieved median τ on the same seeds, so a gain over `fixed` splits into the temperature, the estimator
and the individual τ (`tempbench.leaderboard.rulesets`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from tempbench.config import RunConfig, Suite, Tuning, resolve_run_config
from tempbench.leaderboard.plotdata import history
from tempbench.leaderboard.rulesets import RULESETS_FILE
from tempbench.strategies import get_strategy_class
from tempbench.train import run_id
from tempbench.util import write_atomic

from .samplers import SobolSampler, search_distributions
from .storage import quiet_experimental

BASELINE = "fixed"
EDGE = 0.1  # a choice in the outer tenth of a searched range (log-scaled where the range is) sits at its edge
TUNING_FILE = "tuning.csv"


# ---- the design -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna at WARNING while the design is drawn in throwaway in-memory studies (no "A new study created" lines)."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def space_of(strategy_class: Any, batch_size: int) -> Any:
    """The strategy's `search_space` for a run at global batch `batch_size` (ρ ranges depend on it; the run's
    length is passed as `epochs` by whoever calls the space)."""
    return functools.partial(strategy_class.search_space, batch_size=batch_size)


def design(strategy_class: Any, trials: int, *, seed: int, epochs: int, batch_size: int) -> list[dict[str, Any]]:
    """The first `trials` points of the scrambled Sobol design over the strategy's space, as hyperparameters (the
    same `SobolSampler` sensitivity studies use, so point k here is point k of a study with the same seed). A strategy
    with nothing to search has one configuration, its defaults: `[{}]`."""
    space_fn = space_of(strategy_class, batch_size)
    with quiet_optuna():
        space = search_distributions(space_fn, epochs)
        if not space:
            return [{}]
        with quiet_experimental():
            study = optuna.create_study(sampler=SobolSampler(space, seed=seed), direction="maximize")
        points = []
        for _ in range(trials):
            trial = study.ask()
            points.append(space_fn(trial, epochs=epochs))
            study.tell(trial, 0.0)
    return points


def positions(strategy_class: Any, choice: Mapping[str, Any], *, epochs: int, batch_size: int) -> dict[str, float]:
    """Where each searched hyperparameter of `choice` sits in its declared range: 0 at the low end, 1 at the high end
    (in log space for a log range); categorical choices are left out."""
    with quiet_optuna():
        space = search_distributions(space_of(strategy_class, batch_size), epochs)
    out = {}
    for name, dist in space.items():
        low, high = getattr(dist, "low", None), getattr(dist, "high", None)
        if low is None or name not in choice or high == low:
            continue
        value = float(choice[name])
        if getattr(dist, "log", False):
            value, low, high = math.log(value), math.log(low), math.log(high)
        out[name] = (value - low) / (high - low)
    return out


def at_edges(where: Mapping[str, float]) -> list[str]:
    """The hyperparameters whose choice sits in the outer `EDGE` of its range: the optimum may lie outside it."""
    return [name for name, x in where.items() if x < EDGE or x > 1 - EDGE]


# ---- the plan ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One point of one strategy's design on one dataset."""

    dataset: str
    strategy: str
    index: int
    hyperparameters: dict[str, Any]  # the suite's table for the strategy with the point's values over it
    config_hash: str  # of its tuning runs (one per tuning seed)


@dataclass(frozen=True)
class Choice:
    """A strategy's tuned configuration on one dataset, and how it was chosen."""

    dataset: str
    strategy: str
    hyperparameters: dict[str, Any]
    point: int  # the design point chosen
    trials: int  # points searched (1: nothing to search)
    metric: str
    value: float  # its mean validation value over the tuning seeds
    seeds: int  # tuning seeds behind each point's mean
    positions: dict[str, float] = field(default_factory=dict)
    edges: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TuningPlan:
    """Every tuning run of a suite, resolved: `points` (one per dataset × strategy × design point) and `configs`
    (each point at each tuning seed, with the pairing's validation split: `Pairing.study_settings`)."""

    tuning: Tuning
    points: list[Point]
    configs: list[RunConfig]

    @classmethod
    def of(cls, suite: Suite, settings: Mapping[str, Any]) -> TuningPlan:
        """The plan of `suite` with the run `settings` over its [run] table (a bad point fails here, not mid-run)."""
        tuning = suite.tuning
        if tuning is None:
            raise ValueError(f"suite {suite.name!r} has no [tuning] table")
        points, configs = [], []
        for dataset in suite.datasets:
            for strategy in tuning.strategies:
                base = dict(suite.hyperparameters.get(strategy, {}))
                run = {**suite.run, **settings}
                first = resolve_run_config(strategy, dataset, settings=run, hyperparameters=base)
                # the tuning runs need held-out data to be scored on (views: a slice of the training split)
                run = {**run, **{k: v for k, v in first.pairing.study_settings.items() if not run.get(k)}}
                found = design(first.strategy_class, tuning.trials, seed=tuning.sampler_seed, epochs=first.epochs,
                               batch_size=first.batch_size)
                for index, values in enumerate(found):
                    hyperparameters = {**base, **values}
                    runs = [resolve_run_config(strategy, dataset, settings={**run, "seed": seed},
                                               hyperparameters=hyperparameters) for seed in tuning.seeds]
                    points.append(Point(dataset, strategy, index, hyperparameters, runs[0].hash()))
                    configs += runs
        return cls(tuning, points, configs)

    def choose(self, rows: pd.DataFrame) -> list[Choice]:
        """Each strategy's best point on each dataset by its mean validation `metric` over the tuning seeds (ties:
        the lower point). Only the validation column is read. A point without a finite value at every tuning seed
        cannot be chosen; a strategy with no such point is a ValueError naming it."""
        metric, seeds = self.tuning.metric, len(self.tuning.seeds)
        if metric not in rows.columns:
            raise ValueError(f"the tuning rows have no column {metric!r}: they cannot be scored on it")
        values = pd.to_numeric(rows[metric], errors="coerce")
        scored = pd.DataFrame({"config_hash": rows["config_hash"].astype(str), "seed": rows["seed"].astype(int),
                               "value": values}).drop_duplicates(["config_hash", "seed"], keep="last")
        means = scored.groupby("config_hash")["value"].agg(["mean", "count"])
        choices = []
        for (dataset, strategy), points in self._by_strategy().items():
            best, best_value = None, -math.inf
            for point in points:
                if point.config_hash not in means.index:
                    continue
                mean, count = means.loc[point.config_hash]
                if count == seeds and math.isfinite(mean) and mean > best_value:
                    best, best_value = point, float(mean)
            if best is None:
                raise ValueError(f"no design point of {strategy!r} on {dataset!r} has a finite {metric} at every "
                                 f"tuning seed; its tuning runs are missing or failed")
            config = next(c for c in self.configs if c.hash() == best.config_hash)
            where = positions(config.strategy_class, best.hyperparameters, epochs=config.epochs,
                              batch_size=config.batch_size)
            choices.append(Choice(dataset, strategy, best.hyperparameters, best.index, len(points), metric,
                                  best_value, seeds, where, at_edges(where)))
        return choices

    def _by_strategy(self) -> dict[tuple[str, str], list[Point]]:
        out: dict[tuple[str, str], list[Point]] = {}
        for point in self.points:
            out.setdefault((point.dataset, point.strategy), []).append(point)
        return out

    def trials_table(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Every tuning trial: dataset, strategy, point, seed, its hyperparameters, the validation value and the
        run id — the record a reviewer rebuilds the choice from."""
        by_run = {str(r): i for i, r in enumerate(rows["run_id"])} if "run_id" in rows else {}
        point_of = {p.config_hash: p for p in self.points}
        out = []
        for config in self.configs:
            point, rid = point_of[config.hash()], run_id(config)
            value = rows[self.tuning.metric].iloc[by_run[rid]] if rid in by_run else float("nan")
            out.append({"dataset": point.dataset, "strategy": point.strategy, "point": point.index,
                        "seed": config.seed, "hyperparameters": json.dumps(point.hyperparameters, sort_keys=True),
                        self.tuning.metric: value, "run_id": rid})
        return pd.DataFrame(out)


# ---- the reporting runs -----------------------------------------------------------------------------------------
def tuned_configs(suite: Suite, choices: Sequence[Choice], seeds: Sequence[int],
                  settings: Mapping[str, Any]) -> list[RunConfig]:
    """Each choice trained on the reporting `seeds` with the suite's run settings (no validation split)."""
    return [resolve_run_config(c.strategy, c.dataset, settings={**suite.run, **settings, "seed": seed},
                               hyperparameters=c.hyperparameters) for seed in seeds for c in choices]


def unique_runs(configs: Sequence[RunConfig]) -> list[RunConfig]:
    """`configs` with each run once (a tuned choice equal to a strategy's defaults is one run in both rulesets)."""
    return list({run_id(c): c for c in configs}.values())


def achieved_median_tau(rows: pd.DataFrame, config_hash: str) -> float:
    """The median over a cell's runs of each run's final median τ (`tau_q50` of its last epoch)."""
    finals = [h[-1].get("tau_q50", math.nan) for h in map(history, rows.loc[rows["config_hash"] == config_hash,
                                                                            "history"]) if h]
    finals = [float(v) for v in finals if v is not None and math.isfinite(float(v))]
    if not finals:
        raise ValueError(f"cell {config_hash} has no final median τ (tau_q50) in its history")
    return float(pd.Series(finals).median())


@dataclass(frozen=True)
class Matched:
    """τ-matched cells for one per-sample strategy's cell."""

    dataset: str
    strategy: str  # the per-sample strategy
    cell: str  # its config hash
    tau: float  # its achieved median τ
    controls: dict[str, str]  # role ("fixed", "estimator") -> the control's config hash


def tau_matched_configs(suite: Suite, cells: Mapping[tuple[str, str], str], rows: pd.DataFrame,
                        seeds: Sequence[int], settings: Mapping[str, Any],
                        choices: Sequence[Choice] = ()) -> tuple[list[RunConfig], list[Matched]]:
    """The control runs of `[controls] tau_matched`: for each listed strategy's cell (`cells`: (dataset, strategy)
    -> the config hash whose runs are matched, its tuned cell where it was tuned), `fixed` and the strategy it
    shares its estimator with at the cell's achieved median τ, on the same seeds. The estimator's partner takes the
    strategy's own values of every hyperparameter they share (γ, first-visit rule, ...), τ pinned."""
    configs, matched = [], []
    chosen = {(c.dataset, c.strategy): c.hyperparameters for c in choices}
    for (dataset, strategy), cell in cells.items():
        tau = achieved_median_tau(rows, cell)
        own = resolve_run_config(strategy, dataset, settings={**suite.run, **settings},
                                 hyperparameters=chosen.get((dataset, strategy), suite.hyperparameters.get(strategy,
                                                                                                            {})))
        partner = own.strategy_class.shares_estimator_with
        roles = {"fixed": (BASELINE, {})}
        if partner:
            partner_class = get_strategy_class(partner, own.pairing.name)
            shared = {k: v for k, v in own.hyperparameters.items()
                      if k in partner_class.hyperparameter_names() and k not in partner_class.tau_hyperparameters}
            roles["estimator"] = (partner, shared)
        hashes = {}
        for role, (name, values) in roles.items():
            pinned = get_strategy_class(name, own.pairing.name).pinned_tau_hyperparameters(round(tau, 6))
            hp = {**values, **pinned}
            runs = [resolve_run_config(name, dataset, settings={**suite.run, **settings, "seed": s}, hyperparameters=hp)
                    for s in seeds]
            hashes[role] = runs[0].hash()
            configs += runs
        matched.append(Matched(dataset, strategy, cell, tau, hashes))
    return configs, matched


# ---- the record ---------------------------------------------------------------------------------------------------
def rulesets_record(suite: Suite, defaults: Sequence[RunConfig], choices: Sequence[Choice],
                    tuned: Sequence[RunConfig], matched: Sequence[Matched] = ()) -> dict[str, Any]:
    """What `rulesets.json` holds, for the leaderboard: which config hash is which ruleset's cell (a hash may be
    both), each tuned cell's choice, and the τ-matched controls."""
    cells: dict[str, dict[str, Any]] = {}
    for config in defaults:
        cells.setdefault(config.hash(), {"dataset": config.dataset, "strategy": config.strategy, "rulesets": []})
        if "defaults" not in cells[config.hash()]["rulesets"]:
            cells[config.hash()]["rulesets"].append("defaults")
    by_choice = {(c.dataset, c.strategy): c for c in choices}
    for config in tuned:
        choice = by_choice[(config.dataset, config.strategy)]
        cell = cells.setdefault(config.hash(), {"dataset": config.dataset, "strategy": config.strategy,
                                                "rulesets": []})
        if "tuned" not in cell["rulesets"]:
            cell["rulesets"].append("tuned")
        cell["tuned"] = {"point": choice.point, "trials": choice.trials, "metric": choice.metric,
                         "value": choice.value, "tuning_seeds": choice.seeds, "choice": choice.hyperparameters,
                         "positions": choice.positions, "edges": choice.edges}
    controls = [{"dataset": m.dataset, "strategy": m.strategy, "cell": m.cell, "tau": m.tau, "controls": m.controls}
                for m in matched]
    return {"suite": suite.name, "tuning": None if suite.tuning is None else {
        "trials": suite.tuning.trials, "metric": suite.tuning.metric, "seeds": list(suite.tuning.seeds),
        "strategies": list(suite.tuning.strategies), "sampler_seed": suite.tuning.sampler_seed},
        "primary_metric": suite.primary_metric, "cells": cells, "tau_matched": controls}


def write_record(out: Path, record: Mapping[str, Any], trials: pd.DataFrame | None = None) -> list[Path]:
    """`rulesets.json` and (with a tuning plan) `tuning.csv` beside runs.csv, atomically."""
    files = [write_atomic(out / RULESETS_FILE, lambda fh: json.dump(record, fh, indent=1, sort_keys=True))]
    if trials is not None:
        files.append(write_atomic(out / TUNING_FILE, lambda fh: trials.to_csv(fh, index=False)))
    return files
