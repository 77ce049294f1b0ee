"""`tempbench run`: the runs of a suite not yet in DIR/runs.csv, then the leaderboard (aligned on the terminal,
Markdown and CSV in DIR)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tempbench.config import Suite, check_names, load_suite, merge_flags, parse_literal, run_setting_names
from tempbench.datasets.files import write_atomic
from tempbench.leaderboard import build_leaderboard, read_rows
from tempbench.study.sweep import run_sweep
from tempbench.tracking import NestedTracker, RunHandle, Tracker, open_run

from .common import make_tracker, note, parse_seeds, print_json, tracking_hint


def main(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    settings = parse_run_settings(args.set)
    settings = merge_flags(settings, {"epochs": args.epochs, "device": args.device})
    seeds = parse_seeds(args.seeds) if args.seeds else None
    configs = suite.configs(seeds=seeds, **settings)  # every run resolved before the first trains
    out = Path(args.out or f"runs/{suite.name}")
    note(f"suite {suite.name}: {len(suite.strategies)} strategies × {len(suite.datasets)} datasets × "
         f"{len(seeds or suite.seeds)} seeds = {len(configs)} runs -> {out}")
    tracker, start = make_tracker(args, out), time.perf_counter()
    params = {"suite": suite.name, "datasets": ",".join(suite.datasets), "strategies": ",".join(suite.strategies)}
    with open_run(tracker, f"suite {suite.name}", params, tags={"tempbench.kind": "suite"},
                  key=f"suite:{suite.name}:{out.resolve()}") as parent:
        runs = NestedTracker(tracker, parent, tags={"tempbench.suite": suite.name})
        counts = run_sweep(configs, out, runs, parent, rerun=args.rerun, checkpoints=args.checkpoints)
        board = build_leaderboard(read_rows(out / "runs.csv"), out, source=f"tempbench run --suite {suite.name}")
        log_sweep_artifacts(tracker, parent, suite, out, board.files)
    if args.json:
        print_json({"suite": suite.name, "out": str(out), **counts,
                    "leaderboard": board.summary.to_dict(orient="records")})
    else:
        print(board.terminal, end="")
    note(f"{counts['trained']} runs trained, {counts['skipped']} skipped, in {time.perf_counter() - start:.1f} s; "
         f"rows: {out / 'runs.csv'}; leaderboard: {out / 'leaderboard.md'}")
    note(tracking_hint(args, out))
    return 0


def log_sweep_artifacts(tracker: Tracker, parent: RunHandle, suite: Suite, out: Path, files: list[Path]) -> None:
    """The leaderboard, its figures and the suite file on the sweep's parent run."""
    for path in files:
        tracker.log_artifact(parent, path, artifact_dir="leaderboard")
    if suite.text:
        write_atomic(out / "suite.toml", lambda fh: fh.write(suite.text))
        tracker.log_artifact(parent, out / "suite.toml")


def parse_run_settings(items: list[str]) -> dict:
    """`--set` on a suite takes run settings only (each strategy keeps its suite hyperparameters)."""
    settings = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        settings[key.strip()] = parse_literal(raw)
    check_names(settings, run_setting_names(), "run setting",
                also=" (a suite's strategy hyperparameters are set in its [hyperparameters.NAME] tables)")
    return settings
