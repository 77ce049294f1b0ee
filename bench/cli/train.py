"""`tempbench train`: one run, its row appended to DIR/runs.csv and printed."""

from __future__ import annotations

import argparse
from pathlib import Path

from tempbench.config import merge_flags, resolve_run_config, split_assignments
from tempbench.eval import list_metrics
from tempbench.leaderboard import append_row
from tempbench.train import run_id, train

from .common import make_tracker, note, print_json, tracking_hint

ROW_FIELDS = ("strategy", "dataset", "seed", "num_train", "tau_spearman", "time_train_s", "time_eval_s")


def main(args: argparse.Namespace) -> int:
    settings, hyperparameters = split_assignments(args.set, args.strategy)
    flags = {"seed": args.seed, "long_tail": args.long_tail, "image_size": args.image_size, "epochs": args.epochs,
             "device": args.device}
    config = resolve_run_config(args.strategy, args.dataset, settings=merge_flags(settings, flags),
                                hyperparameters=hyperparameters)
    out = Path(args.out)
    row = train(config, out_dir=out, resume=Path(args.resume) if args.resume else None,
                tracker=make_tracker(args, out))
    append_row(out / "runs.csv", row)
    if args.json:
        print_json(row)
    else:
        print(format_row(row))
    note(f"row appended to {out / 'runs.csv'} (run {run_id(config)})")
    note(tracking_hint(args, out))
    return 0


def format_row(row: dict) -> str:
    """The run's identity, its summary metrics (from the registry) and timings, one per line."""
    lines = [f"{k:>16}: {_fmt(row.get(k))}" for k in ROW_FIELDS[:4]]
    lines += [f"{m.label:>16}: {_fmt(row.get(m.name))}" for m in list_metrics() if m.summary]
    lines += [f"{k:>16}: {_fmt(row.get(k))}" for k in ROW_FIELDS[4:]]
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "–" if value != value else f"{value:.3f}"
    return str(value)
