"""`tempbench run`: the runs of a suite not yet done in DIR, then the leaderboard (aligned on the terminal,
Markdown and CSV in DIR).

    tempbench run --suite quick                                   # 1-thread CPU workers, one per core
    tempbench run --suite quick --devices 0,1,2,3                 # one training per GPU at a time
    tempbench run --suite quick --storage postgresql://u@db/optuna # the same line on every machine: one sweep

Every command works through the folder's sweep, an Optuna grid study (the journal file in DIR, or --storage), so
any number of them on one DIR split the runs and train none twice (`tempbench.study.sweep`). A suite's runs use
one CPU thread each (`threads = 0`, the default) and run side by side in worker processes: the rows do not depend
on the machine's load or on how many workers ran (`tempbench.train.threads`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch

from tempbench.config import Suite, check_names, load_suite, merge_flags, parse_literal, run_setting_names
from tempbench.leaderboard import build_leaderboard, read_rulesets
from tempbench.leaderboard.rows import check_rows_file
from tempbench.study.grid_sweep import SweepJob
from tempbench.study.storage import redact
from tempbench.study.sweep import Swept, choose_study, sweep_folder, sweep_storage
from tempbench.study.trial import process_tracker
from tempbench.study.tuning import (
    TuningPlan,
    rulesets_record,
    tau_matched_configs,
    tuned_configs,
    unique_runs,
    write_record,
)
from tempbench.tracking import RunHandle, Tracker, open_run
from tempbench.train.threads import suite_threads, suite_workers
from tempbench.util import check_output_folder, write_atomic

from .common import note, parse_seeds, print_json, tracking_hint


def main(args: argparse.Namespace) -> int:
    """`tempbench run`: resolve every run of the suite first (a bad setting fails before any training), train the
    missing ones on the folder's sweep — with 1-thread CPU workers, one per core, or one worker per --devices
    entry — then write and print the leaderboard, and log it on the sweep's parent MLflow run."""
    suite = load_suite(args.suite)
    settings = suite_settings(args, suite)
    seeds = parse_seeds(args.seeds) if args.seeds else None
    configs = suite.configs(seeds=seeds, **settings)  # every run resolved before the first trains
    devices = parse_devices(args.devices, args.device) or default_devices(configs)
    out = Path(args.out or f"runs/{suite.name}")
    if args.out is None:  # an explicit --out is checked by the CLI (`check_outputs`); the derived default here
        check_output_folder(out)  # a folder that cannot take the rows fails now, not after the first run trained
        check_rows_file(out / "runs.csv")
    variants = f" + {len(suite.variants)} variants" if suite.variants else ""
    note(f"suite {suite.name}: {len(suite.strategies)} strategies{variants} × {len(suite.datasets)} datasets × "
         f"{len(seeds or suite.seeds)} seeds = {len(configs)} runs -> {out}, {describe_workers(devices, configs)}")
    plan = TuningPlan.of(suite, settings) if suite.tuning is not None else None  # resolved before any training too
    tracker, start = process_tracker(not args.no_tracking, args.tracking_uri, str(out)), time.perf_counter()
    params = {"suite": suite.name, "datasets": ",".join(suite.datasets), "strategies": ",".join(suite.strategies)}
    with open_run(tracker, f"suite {suite.name}", params, tags={"tempbench.kind": "suite"},
                  key=sweep_key(args, suite, out)) as parent:
        swept = sweep_rulesets(args, suite, configs, plan, settings, seeds or suite.seeds, out, parent, devices)
        board = build_leaderboard(swept.rows, out, source=f"tempbench run --suite {suite.name}",
                                  figures=not args.no_figures, rulesets=read_rulesets(out),
                                  primary_metric=suite.primary_metric)
        log_sweep_artifacts(tracker, parent, suite, out, board.files)
    counts = {"trained": swept.trained, "skipped": swept.skipped}
    if args.json:
        print_json({"suite": suite.name, "out": str(out), **counts,
                    "leaderboard": board.summary.to_dict(orient="records")})
    else:
        print(board.terminal, end="")
    note(f"{swept.trained} runs trained, {swept.skipped} skipped, in {time.perf_counter() - start:.1f} s; "
         f"rows: {out / 'runs.csv'}; leaderboard: {out / 'leaderboard.md'}")
    note(tracking_hint(args, out))
    return 0


def suite_settings(args: argparse.Namespace, suite: Suite) -> dict[str, Any]:
    """--set and the run flags, over the suite's [run] table; `threads = 0` (the default) becomes the suite's one
    thread per run (`suite_threads`), so no run times the machine to pick its thread count."""
    settings = merge_flags(parse_run_settings(args.set), {"epochs": args.epochs, "device": args.device})
    return {**settings, "threads": suite_threads(settings.get("threads", suite.run.get("threads", 0)))}


def sweep_rulesets(args: argparse.Namespace, suite: Suite, configs: list, plan: TuningPlan | None,
                   settings: dict[str, Any], seeds: Sequence[int], out: Path, parent: RunHandle,
                   devices: list[str | None]) -> Swept:
    """The suite's runs in up to three sweeps, each resumable and shared like any other: with a [tuning] table,
    every strategy's design points at the tuning seeds (in DIR/tuning, scored on validation data only); then the
    reporting runs, the defaults ruleset's and each strategy's val-best choice; then, with [controls] tau_matched,
    `fixed` and the same-estimator global τ at each listed strategy's achieved median τ. The record
    (rulesets.json, and tuning.csv with every trial) is written beside runs.csv before the leaderboard."""
    choices, tuned, trials = [], [], None
    if plan is not None:
        note(f"tuning: {len(plan.points)} design points ({plan.tuning.trials} per strategy and dataset) × "
             f"{len(plan.tuning.seeds)} tuning seeds = {len(plan.configs)} runs scored on {plan.tuning.metric} "
             f"-> {out / 'tuning'}")
        tuning_rows = sweep_suite(args, suite, plan.configs, out / "tuning", parent, devices, phase="tuning").rows
        choices, trials = plan.choose(tuning_rows), plan.trials_table(tuning_rows)
        for choice in choices:
            edges = f"; at the edge of its range: {', '.join(choice.edges)}" if choice.edges else ""
            note(f"tuned {choice.strategy} on {choice.dataset}: point {choice.point} of {choice.trials}, "
                 f"{choice.metric} {choice.value:.2f}{edges}")
        tuned = tuned_configs(suite, choices, seeds, settings)
    reporting = unique_runs([*configs, *tuned])
    swept = sweep_suite(args, suite, reporting, out, parent, devices)
    record = rulesets_record(suite, configs, choices, tuned)
    if suite.tau_matched:
        cells: dict[tuple[str, str], str] = {}  # the strategy's tuned cell, else its first (not a variant's)
        for c in [*tuned, *configs]:
            if c.strategy in suite.tau_matched:
                cells.setdefault((c.dataset, c.strategy), c.hash())
        controls, matched = tau_matched_configs(suite, cells, swept.rows, seeds, settings, choices)
        for m in matched:
            note(f"τ-matched controls of {m.strategy} on {m.dataset}: its achieved median τ is {m.tau:.4g}")
        extra = sweep_suite(args, suite, unique_runs(controls), out, parent, devices, phase="controls")
        record = rulesets_record(suite, configs, choices, tuned, matched)
        swept = Swept(swept.trained + extra.trained, swept.skipped + extra.skipped,
                      pd.concat([swept.rows, extra.rows], ignore_index=True))
    if plan is not None or suite.tau_matched:
        write_record(out, record, trials)
    return swept


def sweep_suite(args: argparse.Namespace, suite: Suite, configs: list, out: Path, parent: RunHandle,
                devices: list[str | None], phase: str = "suite") -> Swept:
    """The suite on the folder's sweep (the journal file in DIR, or --storage), one worker per device; --rerun
    starts the sweep's next generation, which trains every run again. `phase` names the sweep (`suite-NAME`,
    `tuning-NAME`, `controls-NAME`; with --study, `STUDY` and `STUDY-tuning`, ...)."""
    out.mkdir(parents=True, exist_ok=True)
    storage = sweep_storage(args.storage, out)
    name = (args.study if phase == "suite" else f"{args.study}-{phase}") if args.study else f"{phase}-{suite.name}"
    study = choose_study(storage, name, configs, rerun=args.rerun)
    if study.changed:
        note(f"the suite changed since its sweep in {out} ran: a new sweep {study.name!r}, reusing every run "
             "runs.csv holds")
    if args.rerun:
        note(f"sweep {study.name!r} trains every run again; a `tempbench run` on {out} joins it (until a next --rerun)")
    elif not study.reuse_rows:
        note(f"joining sweep {study.name!r}, the newest in {out} (a --rerun)")
    job = SweepJob(configs, storage, study.name, str(out), suite=suite.name,
                   tracking=not args.no_tracking, tracking_uri=args.tracking_uri, parent_run_id=parent.run_id,
                   checkpoints=args.checkpoints, heartbeat=args.heartbeat, reuse_rows=study.reuse_rows)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return sweep_folder(job, devices)


def default_devices(configs: list) -> list[str | None]:
    """Without --devices: a suite that runs on the CPU gets one worker per `threads` cores (`suite_workers`: with
    one thread per run, one per core); any other, one worker on the run settings' device."""
    if not all(on_cpu(c.device) for c in configs):
        return [None]
    return [None] * suite_workers(max(c.threads for c in configs), len(configs))


def on_cpu(device: str) -> bool:
    """Whether a run setting's device (cpu, auto, cuda:N) trains on the CPU here."""
    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def describe_workers(devices: list[str | None], configs: list) -> str:
    """`2 worker processes, 1 CPU thread per run`, `in this process`, ...: how the runs will be trained."""
    where = "in this process" if len(devices) == 1 else f"{len(devices)} worker processes"
    if not all(on_cpu(d or c.device) for d in devices for c in configs):
        return where
    threads = sorted({c.threads for c in configs})
    return f"{where}, {'/'.join(map(str, threads))} CPU thread{'s' if threads != [1] else ''} per run"


def parse_devices(devices: str | None, device: str | None) -> list[str | None]:
    """`--devices 0,1` -> ["cuda:0", "cuda:1"] (bare numbers are CUDA devices; cpu, cuda:N as given: `cpu,cpu` is two
    CPU workers, `cpu` one); unset -> [] (`default_devices` decides)."""
    if devices is None:
        return []
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
