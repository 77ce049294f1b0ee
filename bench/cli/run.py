"""`tempbench run`: the runs of a suite not yet in DIR/runs.csv, then the leaderboard (aligned on the terminal,
Markdown and CSV in DIR).

    tempbench run --suite quick                                   # one process, runs.csv in runs/quick
    tempbench run --suite quick --devices 0,1,2,3                 # one training per GPU (a local grid study)
    tempbench run --suite quick --storage postgresql://u@db/optuna # the same line on every machine: one sweep
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import optuna

from tempbench.config import Suite, check_names, load_suite, merge_flags, parse_literal, run_setting_names
from tempbench.leaderboard import build_leaderboard, read_rows
from tempbench.study.grid_sweep import SweepJob, run_grid_sweep, sweep_rows
from tempbench.study.storage import open_storage, redact, resolve_storage
from tempbench.study.sweep import run_sweep
from tempbench.study.trial import process_tracker
from tempbench.tracking import NestedTracker, RunHandle, Tracker, open_run
from tempbench.util import write_atomic

from .common import make_tracker, note, parse_seeds, print_json, tracking_hint


def main(args: argparse.Namespace) -> int:
    """`tempbench run`: resolve every run of the suite first (a bad setting fails before any training), train the
    missing ones — in this process, or as a grid study over --devices / --storage — then write and print the
    leaderboard, and log it on the sweep's parent MLflow run."""
    suite = load_suite(args.suite)
    devices = parse_devices(args.devices, args.device)
    settings = parse_run_settings(args.set)
    settings = merge_flags(settings, {"epochs": args.epochs, "device": args.device})
    seeds = parse_seeds(args.seeds) if args.seeds else None
    configs = suite.configs(seeds=seeds, **settings)  # every run resolved before the first trains
    out = Path(args.out or f"runs/{suite.name}")
    variants = f" + {len(suite.variants)} variants" if suite.variants else ""
    note(f"suite {suite.name}: {len(suite.strategies)} strategies{variants} × {len(suite.datasets)} datasets × "
         f"{len(seeds or suite.seeds)} seeds = {len(configs)} runs -> {out}")
    shared = bool(args.storage) or len(devices) > 1
    if shared and args.rerun:
        raise ValueError("--rerun trains a sweep again: with --storage or --devices pass a new --study instead")
    tracker, start = (process_tracker(not args.no_tracking, args.tracking_uri, str(out)) if shared
                      else make_tracker(args, out)), time.perf_counter()
    params = {"suite": suite.name, "datasets": ",".join(suite.datasets), "strategies": ",".join(suite.strategies)}
    with open_run(tracker, f"suite {suite.name}", params, tags={"tempbench.kind": "suite"},
                  key=sweep_key(args, suite, out)) as parent:
        if shared:
            counts, rows = shared_sweep(args, suite, configs, out, parent, devices)
        else:
            runs = NestedTracker(tracker, parent, tags={"tempbench.suite": suite.name})
            counts = run_sweep(configs, out, runs, parent, rerun=args.rerun, checkpoints=args.checkpoints)
            rows = read_rows(out / "runs.csv")
        board = build_leaderboard(rows, out, source=f"tempbench run --suite {suite.name}",
                                  figures=not args.no_figures)
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


def shared_sweep(args: argparse.Namespace, suite: Suite, configs: list, out: Path, parent: RunHandle,
                 devices: list[str | None]) -> tuple[dict[str, int], Any]:
    """The suite as a grid study on --storage (or a journal file in DIR for --devices alone), one worker per
    device; ({"trained": by this command, "skipped"}, every finished run's row)."""
    out.mkdir(parents=True, exist_ok=True)
    storage = resolve_storage(args.storage, out, workers=max(len(devices), 2))
    job = SweepJob(configs, storage, args.study or f"suite-{suite.name}", str(out), suite=suite.name,
                   tracking=not args.no_tracking, tracking_uri=args.tracking_uri, parent_run_id=parent.run_id,
                   checkpoints=args.checkpoints, heartbeat=args.heartbeat)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    before = _finished(storage, job.study_name)
    study = run_grid_sweep(job, devices)
    trained = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) - before
    return {"trained": trained, "skipped": len(configs) - trained}, sweep_rows(study)


def _finished(storage: str, study_name: str) -> int:
    """COMPLETE trials of the sweep before this command (0 for a new one)."""
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage, heartbeat=None))
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def parse_devices(devices: str | None, device: str | None) -> list[str | None]:
    """`--devices 0,1` -> ["cuda:0", "cuda:1"] (bare numbers are CUDA devices; cpu, cuda:N as given); unset -> [None]
    (the run settings' device, one worker)."""
    if devices is None:
        return [None]
    if device is not None:
        raise ValueError("--device and --devices contradict each other; give one")
    found = [d.strip() for d in devices.split(",") if d.strip()]
    if not found:
        raise ValueError(f"--devices takes a comma-separated list (0,1,2,3 or cpu,cpu), got {devices!r}")
    return [f"cuda:{d}" if d.isdigit() else d for d in found]


def sweep_key(args: argparse.Namespace, suite: Suite, out: Path) -> str:
    """The MLflow key of the sweep's parent run: per study on shared storage (one parent for every machine),
    per output folder otherwise."""
    if args.storage:
        return f"suite:{redact(args.storage)}:{args.study or f'suite-{suite.name}'}"
    return f"suite:{suite.name}:{out.resolve()}"


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
