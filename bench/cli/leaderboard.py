"""`tempbench leaderboard RUNS.csv` (or `--storage URL [--study NAME]`): rebuild the leaderboard tables and figures
from result rows, read from a CSV or from every finished trial of a sweep on shared storage, and print it."""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna

from tempbench.eval import get_metric
from tempbench.leaderboard import build_leaderboard, read_rows, read_rulesets
from tempbench.study.grid_sweep import sweep_rows, sweep_study_names
from tempbench.study.storage import open_storage, resolve_storage
from tempbench.util import check_output_folder

from .common import print_json


def main(args: argparse.Namespace) -> int:
    """`tempbench leaderboard`: check the --metric and --primary-metric names, read the rows (a CSV and its
    folder's rulesets.json, or a sweep's storage), write the tables and figures into --out and print the table (or
    its JSON)."""
    for name in [*(args.metric or []), *([args.primary_metric] if args.primary_metric else [])]:
        get_metric(name)  # unknown -> ValueError with a did-you-mean
    rows, out, source, rulesets = rows_from_storage(args) if args.storage else rows_from_file(args)
    board = build_leaderboard(rows, out, metrics=args.metric, source=source, figures=not args.no_figures,
                              rulesets=rulesets, primary_metric=args.primary_metric)
    if args.json:
        print_json(board.summary.to_dict(orient="records"))
    else:
        print(board.terminal, end="")
    return 0


def rows_from_file(args: argparse.Namespace) -> tuple:
    """(rows of RUNS.csv, output folder: --out or the CSV's own folder, the command quoted in the tables, the
    rulesets.json beside the CSV or None)."""
    if args.runs is None:
        raise ValueError("give the rows: RUNS.csv, or --storage URL for a sweep on shared storage")
    runs = Path(args.runs)
    rows = read_rows(runs)
    if not args.out:  # an --out that was given is checked before any work (`cli.check_outputs`)
        check_output_folder(runs.parent)
    out = Path(args.out) if args.out else runs.parent
    return rows, out, "tempbench leaderboard", read_rulesets(runs.parent)


def rows_from_storage(args: argparse.Namespace) -> tuple:
    """The rows of every finished run of the sweep (--study, or the storage's only sweep); no rulesets (the
    storage keeps none)."""
    if args.runs is not None:
        raise ValueError("give RUNS.csv or --storage, not both")
    storage = resolve_storage(args.storage, Path("."))
    name = args.study or _only_sweep(storage)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(storage, heartbeat=None))
    except KeyError:
        raise ValueError(f"no study {name!r} in {args.storage}; its sweeps: {sweep_study_names(storage)}") from None
    out = Path(args.out) if args.out else Path("runs") / name
    return sweep_rows(study), out, f"tempbench leaderboard --storage ... --study {name}", None


def _only_sweep(storage: str) -> str:
    names = sweep_study_names(storage)
    if len(names) != 1:
        raise ValueError(f"the storage holds {len(names)} sweeps ({', '.join(names) or 'none'}): name one with --study")
    return names[0]
