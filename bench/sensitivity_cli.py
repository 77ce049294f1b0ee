"""`tempbench sensitivity`: one Optuna study per strategy on one dataset, each trial a training run, then a report
(`sensitivity.md`, CSVs, figures) of how much the final metric moves across each strategy's search space.

    tempbench sensitivity --strategy fixed,isogclr --dataset cifar10-lt --trials 40 --epochs 50
    tempbench sensitivity --strategy isogclr --dataset cifar10-lt --grid            # the strategy's paper-style grid
    tempbench sensitivity ... --workers 4                                            # 4 local processes, journal file
    tempbench sensitivity ... --storage postgresql://u@db/optuna --study iso-lt      # same line on every machine

Re-running a command resumes its studies. Each study is an MLflow parent run; its trials are nested child runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_METRIC = "knn200_top1"  # the key of the runner's result row that the studies maximise
MONITOR_METRIC = "knn_monitor"  # the runner's per-epoch metric fed to the pruner (kNN on held-out training images)
DEFAULT_TRIALS = 20  # per strategy, TPE search; --grid defaults to the whole grid


@dataclass(frozen=True)
class RunnerTrialFn:
    """A `TrialFn` that trains one run through `tempbench.runner`. A module-level object rather than a closure, so
    `--workers N` can pickle it into spawned processes."""

    dataset: str
    epochs: int | None
    seed: int
    metric: str
    out_dir: str
    tracking: bool
    tracking_uri: str | None
    parent_run_id: str | None = None

    def __call__(self, strategy: str, params: dict, reporter: Any) -> dict[str, Any]:
        # The glue to the runner, kept in this one method. params = {"strategy": {...}, "optim": {...}}; the
        # runner takes strategy hyperparameters under `strategy_params` and optimiser settings (lr, ...) flat.
        from tempbench import runner  # lazily: the training path is heavy and `tempbench --help` must stay instant
        from tempbench.tracking import NestedTracker, RunHandle

        config = runner.build_config(strategy=strategy, dataset=self.dataset, epochs=self.epochs, seed=self.seed,
                                     overrides={"strategy_params": params["strategy"], **params["optim"]})
        tracker = NestedTracker(_process_tracker(self.tracking, self.tracking_uri, self.out_dir),
                                RunHandle("sweep", self.parent_run_id),
                                tags={"optuna.study": reporter.study_name, "optuna.trial": str(reporter.trial_number)})

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            if MONITOR_METRIC in metrics:  # the kNN monitor may run every k epochs only
                reporter.report(epoch, metrics[MONITOR_METRIC])

        row = runner.train(config, tracker=tracker, on_epoch=on_epoch)
        if self.metric not in row:
            raise ValueError(f"the runner's result has no metric {self.metric!r}; it has {sorted(row)}")
        numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return {**numbers, "objective": row[self.metric]}


@dataclass(frozen=True)
class LogUniformSpace:
    """An `extra_space` that searches one shared optimiser hyperparameter log-uniformly (picklable, for workers)."""

    name: str
    low: float
    high: float

    def __call__(self, trial: Any) -> dict[str, float]:
        return {self.name: trial.suggest_float(self.name, self.low, self.high, log=True)}


def make_trial_fn(args: argparse.Namespace, parent_run_id: str | None = None) -> RunnerTrialFn:
    """The trial function of this command: trains with the runner, nested under the study's MLflow run."""
    return RunnerTrialFn(dataset=args.dataset, epochs=args.epochs, seed=args.seed, metric=args.metric,
                         out_dir=str(output_dir(args)), tracking=not args.no_tracking, tracking_uri=args.tracking_uri,
                         parent_run_id=parent_run_id)


@functools.cache
def _process_tracker(enabled: bool, tracking_uri: str | None, out_dir: str) -> Any:
    """One tracker per process, so a dead server warns once per worker rather than once per trial."""
    from tempbench.tracking import create_tracker

    return create_tracker(enabled, tracking_uri, Path(out_dir))


def run_sensitivity(args: argparse.Namespace) -> int:
    """Run or resume the study of every strategy, write the report, print where it is (or JSON with --json)."""
    from tempbench.sensitivity import open_storage, resolve_storage, run_study, summarize_study, write_report
    from tempbench.tracking import create_tracker, open_run, ui_command

    names, out = check_args(args), output_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    open_storage(resolve_storage(args.storage, out, args.workers))  # a bad URL fails here, before any training
    tracker = create_tracker(not args.no_tracking, args.tracking_uri, out)
    summaries, studies, parents = {}, {}, {}
    with ExitStack() as stack:
        for name in names:
            study_name = study_name_for(args, name, several=len(names) > 1)
            parents[name] = stack.enter_context(open_run(tracker, f"sensitivity-{study_name}", _run_params(args, name),
                                                         tags={"tempbench.kind": "sensitivity"}))
            studies[name] = run_study(
                name, make_trial_fn(args, parents[name].run_id), n_trials=_trials(args), grid=args.grid,
                storage=args.storage, study_name=study_name, out_dir=out, seed=args.seed, epochs=args.epochs,
                workers=args.workers, extra_space=LogUniformSpace("lr", *args.lr_range) if args.lr_range else None,
                metric=args.metric)
            summaries[name] = summarize_study(studies[name])
            tracker.log_metrics(parents[name], {k: v for k, v in summaries[name].items()
                                                if k in ("best", "median", "worst", "iqr", "gap") and v is not None})
        report = write_report(summaries, studies, out, command=command_line(args))
        for parent in parents.values():
            tracker.log_artifact(parent, report, artifact_dir="report")
            tracker.log_artifact(parent, out / "sensitivity.csv", artifact_dir="report")
    _print_result(args, summaries, report, ui_command(out) if not (args.no_tracking or args.tracking_uri) else None)
    return 0


def check_args(args: argparse.Namespace) -> list[str]:
    """The strategy names; every bad option raises ValueError naming the valid values, before any work."""
    from tempbench.strategies import get_strategy_class

    names = [n.strip() for n in args.strategy.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"--strategy needs distinct comma-separated names, got {args.strategy!r}")
    for name in names:
        get_strategy_class(name)  # unknown -> ValueError listing the registered strategies
    for option in ("trials", "epochs", "workers"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise ValueError(f"--{option} must be >= 1, got {getattr(args, option)}")
    if args.grid and args.lr_range:
        raise ValueError("--lr-range applies to the TPE search; a --grid study keeps the runner's learning rate")
    if args.lr_range and not 0 < args.lr_range[0] < args.lr_range[1]:
        raise ValueError(f"--lr-range needs 0 < LOW < HIGH, got {args.lr_range}")
    return names


def output_dir(args: argparse.Namespace) -> Path:
    return Path(args.out) if args.out else Path("runs") / f"sensitivity-{_slug(args.dataset)}"


def study_name_for(args: argparse.Namespace, strategy: str, several: bool) -> str:
    """--study as given (suffixed by the strategy when several share the command), else "STRATEGY-DATASET"."""
    if args.study:
        return f"{args.study}-{strategy}" if several else args.study
    return f"{strategy}-{_slug(args.dataset)}"


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces (or resumes) these studies, for the report."""
    parts = ["tempbench", "sensitivity", "--strategy", args.strategy, "--dataset", args.dataset]
    for option in ("trials", "storage", "study", "epochs", "seed", "workers", "out", "metric", "tracking_uri"):
        value = getattr(args, option)
        if value is not None:
            parts += [f"--{option.replace('_', '-')}", redact(str(value))]
    parts += ["--grid"] * args.grid + ["--no-tracking"] * args.no_tracking
    parts += ["--lr-range", *map(str, args.lr_range)] if args.lr_range else []
    return shlex.join(parts)


def redact(url: str) -> str:
    """`url` with any password replaced by ***, for reports and tracking (postgresql://user:secret@host/db)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _trials(args: argparse.Namespace) -> int | None:
    return args.trials if args.trials is not None or args.grid else DEFAULT_TRIALS


def _run_params(args: argparse.Namespace, strategy: str) -> dict[str, Any]:
    return {"strategy": strategy, "dataset": args.dataset, "trials": _trials(args), "grid": args.grid,
            "epochs": args.epochs, "seed": args.seed, "workers": args.workers, "metric": args.metric,
            "storage": redact(args.storage) if args.storage else "default"}


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text).strip("-") or "custom"


def _print_result(args: argparse.Namespace, summaries: dict, report: Path, ui: str | None) -> None:
    if args.json:
        print(json.dumps({"report": str(report), "studies": summaries}, indent=2, default=str))
        return
    for name, s in summaries.items():
        print(f"{name:<12} best {_num(s['best'])}  median {_num(s['median'])}  IQR {_num(s['iqr'])}  "
              f"gap {_num(s['gap'])}  ({s['n_complete']} complete, {s['n_pruned']} pruned)")
    print(f"report: {report}")
    if ui:
        print(f"MLflow: {ui}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sensitivity", help="hyperparameter-sensitivity studies (Optuna) with a report",
                              description=__doc__.split("\n")[0])
    p.add_argument("--strategy", required=True, help="strategy name(s), comma-separated")
    p.add_argument("--dataset", required=True, help="dataset card or source (e.g. sklearn:digits)")
    p.add_argument("--trials", type=int, help=f"trials per strategy (default {DEFAULT_TRIALS}; --grid: the grid)")
    p.add_argument("--grid", action="store_true", help="evaluate the strategy's fixed grid instead of TPE search")
    p.add_argument("--storage", help="Optuna storage: RDB URL or journal:PATH (default: SQLite in --out)")
    p.add_argument("--study", help="study name (default STRATEGY-DATASET); several strategies get -STRATEGY")
    p.add_argument("--epochs", type=int, help="training epochs per trial (default: the runner's)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every trial, and the sampler's")
    p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the trial budget")
    p.add_argument("--lr-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="also search the learning rate, log-uniformly (TPE only)")
    p.add_argument("--metric", default=DEFAULT_METRIC, help=f"result metric to maximise (default {DEFAULT_METRIC})")
    p.add_argument("--out", help="output directory (default runs/sensitivity-DATASET)")
    p.add_argument("--json", action="store_true", help="print the summaries as JSON")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite store in --out)")
    p.add_argument("--no-tracking", action="store_true", help="no MLflow tracking")
    p.set_defaults(func=run_sensitivity)
