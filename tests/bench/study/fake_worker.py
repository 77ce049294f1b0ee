"""A `tempbench` worker process for the scale-out tests: the real command line (`python fake_worker.py sensitivity
...` is `tempbench sensitivity ...`) with only the training replaced by `fake_train`, which sleeps instead of
training and tracks like the runner (a run, per-epoch metrics, an artifact). Everything else is real: the storage,
the workers, the MLflow tracking.

Run by path, so this folder is on the worker's sys.path (pytest's importlib mode keeps the repository root off it).
The patch is made at import, so processes that tempbench spawns from here (`--workers`, `--devices`), which
re-import this file as their main module, train fakes too. FAKE_TRIAL_SECONDS sets how long a trial lasts.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import tempbench.study.grid_sweep
import tempbench.study.trial
from tempbench.tracking import NullTracker
from tempbench.train import run_id


def fake_accuracy(config) -> float:
    """A smooth, deterministic function of the hyperparameters and the seed, in percent."""
    values = [v for v in config.hyperparameters.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return 60 + 20 * math.sin(sum(values) * 3) + 0.5 * math.sin(config.seed * 7)


def fake_train(config, *, out_dir=None, resume=None, tracker=None, on_epoch=None, tracker_parent=None,
               checkpoints=True):
    """What `tempbench.train.train` does, without training: a tracked run, per-epoch monitor, a row."""
    tracker = tracker or NullTracker()
    run = tracker.start_run(f"{config.strategy} fake", {"strategy": config.strategy, "seed": config.seed,
                                                        **config.hyperparameters}, parent=tracker_parent)
    acc, seconds = fake_accuracy(config), float(os.environ.get("FAKE_TRIAL_SECONDS", "1"))
    try:
        for epoch in range(config.epochs):
            time.sleep(seconds / config.epochs)
            tracker.log_metrics(run, {"train/knn_monitor": acc * (epoch + 1) / config.epochs}, step=epoch + 1)
            if on_epoch is not None:
                on_epoch(epoch, {"knn_monitor": acc * (epoch + 1) / config.epochs})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.json"
            path.write_text(json.dumps(config.to_dict(), default=str))
            tracker.log_artifact(run, path)
    except BaseException:
        tracker.end_run(run, "FAILED")
        raise
    tracker.end_run(run)
    return {"run_id": run_id(config), "strategy": config.strategy, "dataset": config.dataset, "seed": config.seed,
            "config_hash": config.hash(), "hyperparameters": json.dumps(config.hyperparameters), "lt_hash": "fake",
            "val_knn200_top1": acc, "knn200_top1": acc - 1.0, "linear_top1": acc + 1.0, "time_train_s": seconds,
            "device": config.device, "worker_pid": os.getpid(),
            "history": json.dumps([{"epoch": config.epochs, "tau_q50": 0.1 + acc / 1000}])}  # τ-matched controls


tempbench.study.trial.train = fake_train
tempbench.study.grid_sweep.train = fake_train

if __name__ == "__main__":
    from tempbench.cli import main

    sys.exit(main(sys.argv[1:]))
