"""`tempbench sensitivity`: one Optuna study per strategy on one dataset, each trial a training run, then a report
(`sensitivity.md`, CSVs, figures) of how much the final metric moves across each strategy's search space.

    tempbench sensitivity --strategy fixed,isogclr --dataset cifar10-lt --trials 32 --epochs 50   # Sobol points
    tempbench sensitivity ... --repeats 3 --repeat-seeds 3          # best/median/worst again over 3 more seeds
    tempbench sensitivity --strategy isogclr --dataset cifar10-lt --grid            # the strategy's paper-style grid
    tempbench sensitivity ... --grid --grid-values rho=0.2,0.5 --set batch_size=128  # a reduced grid, run settings
    tempbench sensitivity ... --goal tune                                            # TPE + MedianPruner: tuning
    tempbench sensitivity ... --workers 4                                            # 4 local processes, journal file
    tempbench sensitivity ... --storage postgresql://u@db/optuna --study iso-lt      # same line on every machine

Every study optimises, prunes and ranks on a validation metric (`val_...`, on a slice held out from training); the
test metric is reported beside it. Re-running a command resumes its studies. Each study is an MLflow parent run
(reused on rerun); its trials are nested child runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from tempbench.config import RunConfig, merge_flags, parse_literal, resolve_pairing, resolve_run_config
from tempbench.eval import get_metric, list_metrics
from tempbench.pairings import Pairing
from tempbench.strategies import Strategy
from tempbench.study.repeats import check_repeats, run_repeats
from tempbench.study.report import summarize_study, write_report
from tempbench.study.sensitivity import make_job, open_storage, resolve_storage, run_job
from tempbench.study.storage import redact
from tempbench.study.trial import LogUniformSpace, RunnerTrialFn, process_tracker
from tempbench.tracking import Tracker, open_run, ui_command
from tempbench.util import check_output_folder, slug

from .parser import DEFAULT_TRIALS
from .run import parse_run_settings

# A progress bar per trial only clutters a study's log; the monitor (kNN on a slice held out from training, or r_mean
# on an image–caption dataset's own val split) feeds the pruner, and the validation metrics are what the study
# selects on. --set overrides these.
STUDY_RUN_DEFAULTS = {"progress": False, "monitor_every": 1}
OWNED_SETTINGS = {"seed": "--seed"}  # run settings the command itself decides


@dataclass(frozen=True)
class Plan:
    """What the command resolved once, before any study starts: the strategy names, the run settings every trial
    shares, and each strategy's class for the dataset's pairing (whose search space and grid its study samples)."""

    names: list[str]
    settings: dict[str, Any]
    classes: dict[str, type[Strategy]]


def make_trial_fn(args: argparse.Namespace, plan: Plan, parent_run_id: str | None = None) -> RunnerTrialFn:
    """The trial function of this command: trains with the runner, nested under the study's MLflow run."""
    return RunnerTrialFn(dataset=args.dataset, epochs=args.epochs, seed=args.seed, metric=args.metric,
                         out_dir=str(output_dir(args)), tracking=not args.no_tracking, tracking_uri=args.tracking_uri,
                         parent_run_id=parent_run_id, run_settings=plan.settings)


def run_settings(args: argparse.Namespace, pairing: Pairing) -> dict[str, Any]:
    """The RunConfig fields every trial shares: the study defaults, the pairing's (views: a slice held out of
    training for the monitor and the objective), then `--set key=value`; a strategy hyperparameter or a setting the
    command owns is an error (the search decides those)."""
    settings = merge_flags(parse_run_settings(args.set), {"epochs": args.epochs, "device": args.device})
    owned = {k: v for k, v in OWNED_SETTINGS.items() if k in settings}
    if owned:
        raise ValueError("--set cannot set " + ", ".join(f"{k} (use {v})" for k, v in owned.items()))
    if args.lr_range and "lr" in settings:
        raise ValueError("--set lr=... and --lr-range contradict each other; give one")
    return {**STUDY_RUN_DEFAULTS, **pairing.study_settings, **settings}


def grid_values_for(args: argparse.Namespace, plan: Plan) -> dict[str, dict[str, list]]:
    """Per strategy, the grid values `--grid-values [STRATEGY.]PARAM=V1,V2,...` replace; an unqualified PARAM goes to
    every strategy whose grid has it. A value that reaches no strategy is an error."""
    if args.grid_values and not args.grid:
        raise ValueError("--grid-values reduces or replaces a --grid study's grid; add --grid")
    names = plan.names
    found: dict[str, dict[str, list]] = {name: {} for name in names}
    for item in args.grid_values:
        key, sep, raw = item.partition("=")
        owner, _, param = key.strip().rpartition(".")
        values = [parse_literal(v.strip()) for v in raw.split(",") if v.strip()]
        if not sep or not param or not values:
            raise ValueError(f"--grid-values expects [STRATEGY.]PARAM=V1,V2,..., got {item!r}")
        targets = [owner] if owner else [n for n in names if param in plan.classes[n].search_grid()]
        if not targets or any(t not in found for t in targets):
            raise ValueError(f"--grid-values {item!r} matches none of the grids of {names}")
        for target in targets:
            found[target][param] = values
    return found


def main(args: argparse.Namespace) -> int:
    """Run or resume the study of every strategy (and its repeats), write the report, print where it is."""
    plan, out = check_args(args), output_dir(args)
    if args.out is None:  # an explicit --out is checked by the CLI (`check_outputs`); the derived default here
        check_output_folder(out)  # before any training: the report, the storage and the MLflow store live there
    names, grids = plan.names, grid_values_for(args, plan)
    if args.storage:  # a bad URL fails here, before any file is written or any training
        open_storage(resolve_storage(args.storage, out, args.workers), args.heartbeat)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our one line per trial replaces Optuna's INFO lines
    tracker = process_tracker(not args.no_tracking, args.tracking_uri, str(out))
    summaries, studies, parents = {}, {}, {}
    with ExitStack() as stack:
        for name in names:
            study_name = study_name_for(args, name, several=len(names) > 1)
            parents[name] = stack.enter_context(open_run(
                tracker, f"sensitivity-{study_name}", _run_params(args, plan, name, grids[name]),
                tags={"tempbench.kind": "sensitivity"}, key=f"sensitivity:{_storage_key(args, out)}:{study_name}"))
            studies[name], summaries[name] = _study(args, plan, name, study_name, grids[name],
                                                    parents[name].run_id)
            tracker.log_metrics(parents[name], {k: v for k, v in summaries[name].items() if v is not None and k in
                                                ("best", "median", "worst", "iqr", "gap", "seed_std", "test_best")})
        report = write_report(summaries, studies, out, command=command_line(args))
        _attach_report(tracker, parents.values(), out, report)
    _print_result(args, summaries, report, ui_command(out) if not (args.no_tracking or args.tracking_uri) else None)
    return 0


def _study(args: argparse.Namespace, plan: Plan, name: str, study_name: str, grid_values: dict[str, list],
           parent_run_id: str | None) -> tuple[Any, dict[str, Any]]:
    """Run (or resume) one strategy's study and its repeats, trials nested under `parent_run_id`; (study, summary)."""
    job = make_job(plan.classes[name], make_trial_fn(args, plan, parent_run_id), n_trials=_trials(args), grid=args.grid,
                   storage=args.storage, study_name=study_name, out_dir=output_dir(args), seed=args.seed,
                   epochs=args.epochs, workers=args.workers, grid_values=grid_values, metric=args.metric,
                   batch_size=plan.settings.get("batch_size", RunConfig.__dataclass_fields__["batch_size"].default),
                   test_metric=test_metric_for(args.metric), goal=args.goal, prune=args.prune,
                   heartbeat=args.heartbeat,
                   extra_space=LogUniformSpace("lr", *args.lr_range) if args.lr_range else None)
    study = run_job(job, args.workers)
    repeated = None
    if args.repeats:
        seeds = [args.seed + 1 + i for i in range(args.repeat_seeds)]  # new seeds: the original trial is one more
        repeated = run_repeats(job, study, args.repeats, seeds, args.workers)
    return study, summarize_study(study, repeated)


def test_metric_for(metric: str) -> str | None:
    """The test metric reported beside a validation objective: `val_knn200_top1` -> `knn200_top1`."""
    name = metric.removeprefix("val_")
    return name if any(m.name == name for m in list_metrics(split="test")) else None


def _attach_report(tracker: Tracker, parents: Any, out: Path, report: Path) -> None:
    for parent in parents:
        tracker.log_artifact(parent, report, artifact_dir="report")
        tracker.log_artifact(parent, out / "sensitivity.csv", artifact_dir="report")


def _storage_key(args: argparse.Namespace, out: Path) -> str:
    """Where the study lives, as part of its MLflow parent's key: the same study on every machine, one parent."""
    return redact(args.storage) if args.storage else str(out.resolve())


def check_args(args: argparse.Namespace) -> Plan:
    """The resolved plan; every bad option raises ValueError naming the valid values, before any work."""
    names = [n.strip() for n in args.strategy.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"--strategy needs distinct comma-separated names, got {args.strategy!r}")
    for option in ("trials", "epochs", "workers", "repeat_seeds", "heartbeat"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    if args.grid and args.lr_range:
        raise ValueError("--lr-range adds to a sampled search space; a --grid study keeps the runner's learning rate")
    if args.grid and args.goal == "tune":
        raise ValueError("--grid is a sensitivity design; --goal tune searches with TPE (drop one)")
    if args.repeats:
        check_repeats(args.repeats)
    if args.lr_range and not 0 < args.lr_range[0] < args.lr_range[1]:
        raise ValueError(f"--lr-range needs 0 < LOW < HIGH, got {args.lr_range}")
    plan = resolve_plan(args, names)
    _check_metric(args)
    return plan


def resolve_plan(args: argparse.Namespace, names: list[str]) -> Plan:
    """Resolve every strategy's run on the dataset once: unknown names, a strategy without the dataset's pairing
    and a --set key or value the runner would refuse fail here, before any study is created."""
    settings = run_settings(args, resolve_pairing(args.dataset))
    configs = {name: resolve_run_config(name, args.dataset, settings={**settings, "seed": args.seed})
               for name in names}
    return Plan(names, settings, {name: config.strategy_class for name, config in configs.items()})


def _check_metric(args: argparse.Namespace) -> None:
    """Fill in --metric from the dataset's pairing when unset; refuse a test metric or another pairing's."""
    pairing = resolve_pairing(args.dataset)
    args.metric = args.metric or pairing.study_metric
    metric = get_metric(args.metric)
    if metric.pairing != pairing.name:
        valid = ", ".join(m.name for m in list_metrics(pairing=pairing.name, split="val"))
        raise ValueError(f"--metric {args.metric} is measured on {metric.pairing} runs; {args.dataset} is "
                         f"{pairing.name} data (its validation metrics: {valid})")
    if metric.split != "val":
        raise ValueError(f"--metric {args.metric} is measured on the test split; a study optimises, prunes and "
                         f"ranks on data held out from training only: use a val_ metric (e.g. val_knn200_top1)")


def output_dir(args: argparse.Namespace) -> Path:
    """--out, else runs/sensitivity-DATASET: the report, the default SQLite storage and the MLflow store."""
    return Path(args.out) if args.out else Path("runs") / f"sensitivity-{slug(args.dataset)}"


def study_name_for(args: argparse.Namespace, strategy: str, several: bool) -> str:
    """--study as given (suffixed by the strategy when several share the command), else "STRATEGY-DATASET"."""
    if args.study:
        return f"{args.study}-{strategy}" if several else args.study
    return f"{strategy}-{slug(args.dataset)}"


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces (or resumes) these studies, for the report."""
    parts = ["tempbench", "sensitivity", "--strategy", args.strategy, "--dataset", args.dataset]
    for option in ("trials", "storage", "study", "epochs", "seed", "workers", "out", "metric", "tracking_uri", "goal",
                   "repeats", "repeat_seeds"):
        value = getattr(args, option)
        if value is not None and value != 0:
            parts += [f"--{option.replace('_', '-')}", redact(str(value))]
    parts += ["--grid"] * args.grid + ["--prune"] * args.prune + ["--no-tracking"] * args.no_tracking
    parts += ["--lr-range", *map(str, args.lr_range)] if args.lr_range else []
    parts += [part for item in args.grid_values for part in ("--grid-values", item)]
    parts += [part for item in args.set for part in ("--set", item)]
    return shlex.join(parts)


def _trials(args: argparse.Namespace) -> int | None:
    return args.trials if args.trials is not None or args.grid else DEFAULT_TRIALS


def _run_params(args: argparse.Namespace, plan: Plan, strategy: str, grid_values: dict[str, list]) -> dict[str, Any]:
    return {"strategy": strategy, "dataset": args.dataset, "trials": _trials(args), "grid": args.grid,
            "goal": args.goal, "prune": args.prune, "repeats": args.repeats, "repeat_seeds": args.repeat_seeds,
            "epochs": args.epochs, "seed": args.seed, "workers": args.workers, "metric": args.metric,
            "storage": redact(args.storage) if args.storage else "default", "run": plan.settings,
            "grid_values": grid_values}


def _print_result(args: argparse.Namespace, summaries: dict, report: Path, ui: str | None) -> None:
    if args.json:
        print(json.dumps({"report": str(report), "studies": summaries}, indent=2, default=str))
        return
    for name, s in summaries.items():
        print(f"{name:<12} {s['metric']}: best {_num(s['best'])} (test {_num(s['test_best'])})  median "
              f"{_num(s['median'])}  IQR {_num(s['iqr'])}  gap {_num(s['gap'])}  seed std {_num(s['seed_std'])}  "
              f"({s['n_complete']} complete, {s['n_pruned']} pruned)")
    print(f"report: {report}")
    if ui:
        print(f"MLflow: {ui}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
