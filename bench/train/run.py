"""One training run, top to bottom: resolved config -> setup -> epochs (checkpoints, tracking) -> evaluation -> row.

    row = train(resolve_run_config("isogclr", "digits-lt", settings={"epochs": 20}), out_dir=Path("runs/x"))

Checkpoints are taken at epoch boundaries; per-epoch generators seeded by (seed, epoch) make a resumed run equal an
uninterrupted one bit for bit on CPU. The row is returned (and tracked) before any figure is drawn, so a failing
artifact can never cost a finished run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tempbench.config import EXECUTION_SETTINGS, RunConfig
from tempbench.eval import list_metrics
from tempbench.names import slug
from tempbench.provenance import git_commit
from tempbench.tracking import NullTracker, Tracker

from .checkpoint import restore_setup, save_setup
from .loop import NonFiniteLossError, monitor, train_one_epoch
from .row import TauReport, build_row, evaluate_run
from .setup import Setup, build_setup

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclasses.dataclass
class Progress:
    """How far a run has come, saved in checkpoints."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)  # per-epoch metrics


def run_id(config: RunConfig) -> str:
    """`strategy-dataset-sSEED-HASH`: readable, and unique per resolved configuration and seed."""
    return f"{config.strategy}-{slug(config.dataset)[-40:]}-s{config.seed}-{config.hash()}"


def train(config: RunConfig, *, out_dir: Path | None = None, resume: Path | None = None,
          tracker: Tracker | None = None, on_epoch: EpochCallback | None = None, tracker_parent: Any = None,
          checkpoints: bool = True) -> dict[str, Any] | None:
    """Train one run and evaluate it; returns the result row (also tracked when `tracker` is given); None on the
    other processes of a torchrun launch (rank 0 returns the row).

    out_dir: where checkpoints (`out_dir/checkpoints/<run_id>.pt`, if `checkpoints`) and τ tables go.
    resume: a checkpoint to continue from (same config required).
    on_epoch(epoch, metrics): called after every epoch (e.g. an Optuna pruning reporter; may raise to stop).
    """
    name = run_id(config)
    t0 = time.perf_counter()
    setup = build_setup(config)
    time_data = time.perf_counter() - t0
    main = setup.world.main  # under torchrun only rank 0 writes checkpoints, rows and tracking
    tracker = (tracker or NullTracker()) if main else NullTracker()
    progress = Progress(**restore_setup(setup, Path(resume))) if resume is not None else Progress()
    ckpt = out_dir / "checkpoints" / f"{name}.pt" if out_dir is not None and checkpoints and main else None
    handle = tracker.start_run(run_name(config), tracked_params(setup), parent=tracker_parent,
                               tags=run_tags(config, name))
    try:
        t1 = time.perf_counter()
        run_epochs(setup, progress, ckpt, tracker, handle, on_epoch)
        time_train = time.perf_counter() - t1
        t2 = time.perf_counter()
        metrics, tau_report = evaluate_run(setup)
        if not main:
            return None
        times = {"time_data_s": time_data, "time_train_s": time_train, "time_eval_s": time.perf_counter() - t2}
        row = build_row(setup, progress, metrics, tau_report, name, times)
        tracker.log_metrics(handle, final_metrics(row))
    except BaseException:
        tracker.end_run(handle, status="FAILED")
        raise
    write_artifacts(tracker, handle, setup, tau_report, out_dir, name)
    tracker.end_run(handle)
    return row


def run_name(config: RunConfig) -> str:
    """What the MLflow UI lists: strategy, dataset and seed (the run id, with its hash, is a tag)."""
    return f"{config.strategy} · {config.dataset} · seed {config.seed}"


def run_tags(config: RunConfig, name: str) -> dict[str, str]:
    return {"tempbench.strategy": config.strategy, "tempbench.dataset": config.dataset,
            "tempbench.seed": str(config.seed), "tempbench.pairing": config.pairing,
            "tempbench.config_hash": config.hash(), "tempbench.run_id": name, "tempbench.device": config.device,
            "mlflow.source.name": "tempbench", "mlflow.source.type": "LOCAL",  # the UI's Source column
            "mlflow.source.git.commit": git_commit()}


def tracked_params(setup: Setup) -> dict[str, Any]:
    """The resolved configuration (what decides the results, not how it ran) plus what the data resolved to."""
    config = {k: v for k, v in setup.config.to_dict().items() if k not in EXECUTION_SETTINGS}
    return {**config, "num_train": len(setup.train_idx), "num_val": len(setup.val_idx),
            "image_size": setup.data.image_size}


def final_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The row's numbers under names that cannot collide with the per-epoch `train/...` curves: registered
    metrics as `test/NAME` or `val/NAME`, every other finite outcome as `run/NAME`. Settings (batch size, seed,
    image size, ...) are params, not metrics: they would fill the UI's charts with one bar each."""
    split_of = {m.name: m.split for m in list_metrics()}
    settings = set(RunConfig.__dataclass_fields__) | {"num_train", "num_val", "image_size"}
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if key in settings:
            continue
        if key in split_of:
            out[f"{split_of[key]}/{key.removeprefix('val_')}"] = float(value)
        else:
            out[f"run/{key}"] = float(value)
    return out


def run_epochs(setup: Setup, progress: Progress, ckpt: Path | None, tracker: Tracker, handle: Any,
               on_epoch: EpochCallback | None) -> None:
    cfg = setup.config
    for epoch in range(progress.epoch, cfg.epochs):
        try:
            metrics, progress.step = train_one_epoch(setup, epoch, progress.step)
        except NonFiniteLossError as err:
            kept = ckpt if ckpt is not None and ckpt.exists() else None
            raise NonFiniteLossError(f"{err}; last good checkpoint: {kept or 'none (no checkpoint was taken)'}"
                                     ) from None
        if cfg.monitor_every and ((epoch + 1) % cfg.monitor_every == 0 or epoch + 1 == cfg.epochs):
            metrics.update(monitor(setup))
        progress.epoch = epoch + 1
        progress.history.append(metrics)
        tracker.log_metrics(handle, {f"train/{k}": v for k, v in metrics.items() if isinstance(v, float)},
                            step=epoch + 1)
        last = epoch + 1 == cfg.epochs
        if ckpt is not None and (last or (cfg.checkpoint_every and progress.epoch % cfg.checkpoint_every == 0)):
            save_setup(ckpt, setup, dataclasses.asdict(progress))
        if on_epoch is not None:
            on_epoch(epoch, metrics)


def write_artifacts(tracker: Tracker, handle: Any, setup: Setup, tau_report: TauReport | None,
                    out_dir: Path | None, name: str) -> None:
    """Track the resolved config (`config.json`) and, for per-sample-τ strategies, the τ tables and figure (kept
    in out_dir/tau/<run>). Without an out_dir (e.g. study trials) the files pass through a temporary folder: the
    tracking store keeps its own copy. A file that cannot be written is a warning naming it, never an error."""
    with tempfile.TemporaryDirectory(prefix="tempbench-artifacts-") as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(tracked_params(setup), indent=2, sort_keys=True, default=str))
        tracker.log_artifact(handle, config_path)
        if tau_report is None:
            return
        folder = out_dir / "tau" / name if out_dir is not None else Path(tmp) / "tau"
        folder.mkdir(parents=True, exist_ok=True)
        title = f"{setup.config.strategy} on {setup.data.name}, seed {setup.config.seed}"
        for path in tau_report.write(folder, title=title):
            tracker.log_artifact(handle, path, artifact_dir="tau")
