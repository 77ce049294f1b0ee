"""`tempbench train`: one run, its row appended to DIR/runs.csv and printed. `--resume` of a run that is already
finished (its checkpoint at the last epoch, its row in DIR/runs.csv) prints that row and appends no second one."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tempbench.config import RunConfig, resolve_run_config
from tempbench.distributed import launched_by_torchrun, shutdown
from tempbench.eval import list_metrics
from tempbench.leaderboard import keep_row, read_rows
from tempbench.train import run_id, train
from tempbench.train.checkpoint import load_checkpoint

from .common import make_tracker, note, print_json, tracking_hint

ROW_FIELDS = ("strategy", "dataset", "seed", "num_train", "tau_spearman", "time_train_s", "time_eval_s")


def main(args: argparse.Namespace) -> int:
    """`tempbench train`: relaunch under torchrun when --nproc-per-node > 1 asks for it, else train in this process;
    this process leaves its process group (if it joined one) however the run ends."""
    if args.nproc_per_node > 1 and not launched_by_torchrun():
        return launch(args)
    try:
        return train_here(args)
    finally:
        shutdown()


def launch(args: argparse.Namespace) -> int:
    """Run this same command under torchrun on N local processes (its rendezvous on 127.0.0.1)."""
    argv = [a for a in args.argv if not a.startswith("--nproc-per-node")]
    if "--nproc-per-node" in args.argv:  # the value was a separate word
        i = args.argv.index("--nproc-per-node")
        argv = args.argv[:i] + args.argv[i + 2:]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={args.nproc_per_node}", "-m", "tempbench", *argv]
    note(f"launching {args.nproc_per_node} processes: {shlex.join(command)}")
    return subprocess.run(command, check=False).returncode


def train_here(args: argparse.Namespace) -> int:
    """Resolve the run's config from the flags and --set, train it, and (rank 0 only) append its row to
    DIR/runs.csv and print it (JSON with --json). Exit code 0. A --resume with nothing left to train prints the
    row the run already has."""
    flags = {"seed": args.seed, "long_tail": args.long_tail, "image_size": args.image_size, "epochs": args.epochs,
             "device": args.device}
    config = resolve_run_config(args.strategy, args.dataset, settings=flags, assignments=args.set)
    out = Path(args.out)
    main_process = int(os.environ.get("RANK", "0")) == 0  # torchrun sets RANK; one tracker, on rank 0, logs the run
    finished = finished_row(config, Path(args.resume), out) if args.resume else None
    if finished is not None:  # every process of a launch reads the same files, so all of them stop here
        if main_process:
            print_row(args, finished)
            note(f"run {run_id(config)} is already finished: {args.resume} holds its last epoch and "
                 f"{out / 'runs.csv'} its row (printed); nothing trained, no row appended")
        return 0
    tracker = make_tracker(args, out) if main_process else None
    row = train(config, out_dir=out, resume=Path(args.resume) if args.resume else None, tracker=tracker)
    if row is None:  # another process of a torchrun launch: rank 0 reports
        return 0
    kept = keep_row(out / "runs.csv", row)  # no file could take it: RowNotKept, and the CLI prints the row
    print_row(args, row)
    note(f"row {'appended to' if kept.suffix == '.csv' else 'kept in'} {kept} (run {run_id(config)})")
    note(tracking_hint(args, out))
    return 0


def finished_row(config: RunConfig, checkpoint: Path, out: Path) -> dict[str, Any] | None:
    """The row of `config`'s run if resuming `checkpoint` has nothing left to do: the checkpoint holds this config at
    its last epoch and out/runs.csv holds the run's row (the latest, if several). Otherwise None, and resuming trains
    the rest (or, for a finished run whose row was lost, evaluates it again and appends the row)."""
    ckpt = load_checkpoint(checkpoint)  # a missing or unreadable file is one line here already
    at_end = ckpt["config"] == config.to_dict() and ckpt["progress"].get("epoch", 0) >= config.epochs
    if not at_end or not (out / "runs.csv").is_file():
        return None
    rows = read_rows(out / "runs.csv")
    mine = rows[rows["run_id"] == run_id(config)] if "run_id" in rows.columns else rows.iloc[:0]
    if mine.empty:
        return None
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in mine.iloc[-1].items()}


def print_row(args: argparse.Namespace, row: dict[str, Any]) -> None:
    """The row on stdout: JSON with --json, else `format_row`'s lines."""
    if args.json:
        print_json(row)
    else:
        print(format_row(row))


def format_row(row: dict) -> str:
    """The run's identity, its summary metrics (from the registry) and timings, one per line."""
    lines = [f"{k:>16}: {_fmt(row.get(k))}" for k in ROW_FIELDS[:4]]
    lines += [f"{m.label:>16}: {_fmt(row.get(m.name))}" for m in list_metrics(pairing=row.get("pairing", "views"))
              if m.summary]
    lines += [f"{k:>16}: {_fmt(row.get(k))}" for k in ROW_FIELDS[4:]]
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "–" if value != value else f"{value:.3f}"
    return str(value)
