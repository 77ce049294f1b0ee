"""`tempbench train` (one run, prints its row) and `tempbench run` (a suite: the main job, prints the leaderboard)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_SUITE = "quick"


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: SQLite store in --out)")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")


def make_tracker(args: argparse.Namespace, out: Path) -> Any:
    from tempbench.tracking import create_tracker

    return create_tracker(enabled=not args.no_tracking, tracking_uri=args.tracking_uri, out_dir=out)


def tracking_hint(args: argparse.Namespace, out: Path) -> str:
    """Where the MLflow runs went, as a line to print (empty with --no-tracking)."""
    from tempbench.tracking import ui_command

    if args.no_tracking:
        return ""
    if args.tracking_uri:
        return f"MLflow runs: {args.tracking_uri}"
    return f"MLflow runs: {ui_command(out)}"


def cmd_train(args: argparse.Namespace) -> int:
    from tempbench.config import make_run_config, parse_assignments
    from tempbench.results import append_row
    from tempbench.runner import run_id, train

    run_settings, strategy_params = parse_assignments(args.set)
    values = {"strategy": args.strategy, "dataset": args.dataset, "seed": args.seed, **run_settings,
              "strategy_params": {**run_settings.pop("strategy_params", {}), **strategy_params}}
    for key in ("long_tail", "image_size", "epochs", "device"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    config = make_run_config(**values)
    out = Path(args.out)
    tracker = make_tracker(args, out)
    row = train(config, out_dir=out, resume=Path(args.resume) if args.resume else None, tracker=tracker)
    append_row(out / "runs.csv", row)
    if args.json:
        print(json.dumps(row, indent=2, default=str))
    else:
        print(format_row(row))
        print(f"row appended to {out / 'runs.csv'} (run {run_id(config)})")
        if hint := tracking_hint(args, out):
            print(hint)
    return 0


def format_row(row: dict[str, Any]) -> str:
    keys = ["strategy", "dataset", "seed", "knn200_top1", "knn20_top1", "linear_top1", "linear_few", "linear_tail",
            "recall_at_1", "tau_spearman", "time_train_s", "time_eval_s"]
    return "\n".join(f"{k:>14}: {fmt(row.get(k))}" for k in keys)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def cmd_run(args: argparse.Namespace) -> int:
    from tempbench.config import load_suite, parse_assignments

    suite = load_suite(args.suite)
    run_settings, strategy_params = parse_assignments(args.set)
    if strategy_params:
        raise ValueError(f"--set on a suite takes run settings only; unknown: {sorted(strategy_params)}")
    if args.device is not None:
        run_settings["device"] = args.device
    if args.epochs is not None:
        run_settings["epochs"] = args.epochs
    configs = suite.configs(seeds=args.seeds, **run_settings)
    out = Path(args.out or f"runs/{suite.name}")
    print(f"suite {suite.name}: {len(suite.strategies)} strategies × {len(suite.datasets)} datasets × "
          f"{len(configs) // max(1, len(suite.strategies) * len(suite.datasets))} seeds = {len(configs)} runs "
          f"-> {out}", file=sys.stderr)
    start = time.perf_counter()
    run_sweep(suite.name, configs, out, make_tracker(args, out), rerun=args.rerun)
    print(print_leaderboard(out), end="")
    print(f"\n{len(configs)} runs in {time.perf_counter() - start:.1f} s; rows: {out / 'runs.csv'}; "
          f"leaderboard: {out / 'leaderboard.md'}", file=sys.stderr)
    if hint := tracking_hint(args, out):
        print(hint, file=sys.stderr)
    return 0


def run_sweep(name: str, configs: list[Any], out: Path, tracker: Any, rerun: bool = False) -> None:
    """Train every config not already in out/runs.csv (so an interrupted sweep continues), appending each row."""
    from tempbench.results import append_row, read_rows
    from tempbench.runner import run_id, train

    done = set()
    if (out / "runs.csv").exists() and not rerun:
        done = set(read_rows(out / "runs.csv").get("run_id", []))
    parent = tracker.start_run(f"sweep-{name}", {"suite": name, "runs": len(configs)})
    try:
        for i, config in enumerate(configs, 1):
            rid = run_id(config)
            if rid in done:
                print(f"[{i}/{len(configs)}] {rid}: already in runs.csv, skipped", file=sys.stderr)
                continue
            t0 = time.perf_counter()
            row = train(config, out_dir=out, tracker=tracker, tracker_parent=parent)
            append_row(out / "runs.csv", row)
            print(f"[{i}/{len(configs)}] {rid}: kNN {fmt(row['knn200_top1'])} linear {fmt(row['linear_top1'])} "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        tracker.end_run(parent)
    except BaseException:
        tracker.end_run(parent, status="FAILED")
        raise


def print_leaderboard(out: Path) -> str:
    from tempbench.results import build_leaderboard, read_rows

    build_leaderboard(read_rows(out / "runs.csv"), out)
    return (out / "leaderboard.md").read_text()


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train and evaluate one run; prints its result row")
    p.add_argument("--strategy", required=True, help="a registered strategy (see `tempbench run --help`)")
    p.add_argument("--dataset", required=True, help="a card (digits, cifar10-lt, ...) or a source (imagefolder:PATH)")
    p.add_argument("--long-tail", type=float, default=None, metavar="R", help="imbalance factor in (0, 1]")
    p.add_argument("--image-size", type=int, default=None, metavar="S")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a run setting (epochs, lr, encoder, ...) or a strategy hyperparameter (tau, rho, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--device", default=None, help="auto | cpu | cuda (default auto)")
    p.add_argument("--out", default="runs/train", help="output directory (runs.csv, checkpoints, MLflow store)")
    p.add_argument("--resume", default=None, metavar="CKPT", help="continue from a checkpoint of the same config")
    p.add_argument("--json", action="store_true", help="print the row as JSON")
    add_tracking_options(p)
    p.set_defaults(func=cmd_train)

    r = subparsers.add_parser("run", help="run a suite (default: quick) and print its leaderboard")
    r.add_argument("--suite", default=DEFAULT_SUITE, help="a shipped suite name or a TOML path (default: quick)")
    r.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the suite's)")
    r.add_argument("--epochs", type=int, default=None, help="override the suite's epochs")
    r.add_argument("--device", default=None, help="auto | cpu | cuda (default: the suite's)")
    r.add_argument("--out", default=None, help="output directory (default: runs/<suite>)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a run setting")
    r.add_argument("--rerun", action="store_true", help="train again runs already present in runs.csv")
    add_tracking_options(r)
    r.set_defaults(func=cmd_run)
