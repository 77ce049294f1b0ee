"""A finished run -> its evaluation metrics, τ analytics and result row (everything design.md lists per row)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch


@dataclasses.dataclass
class TauReport:
    """Per-sample τ of a per-sample strategy with its class analytics (tempbench.eval.summarize_tau)."""

    tau: torch.Tensor  # (N_ssl,) CPU
    labels: torch.Tensor  # (N_ssl,) CPU
    summary: dict[str, Any]

    def write(self, folder: Path, title: str = "") -> list[Path]:
        """tau_per_sample.csv, tau_by_class.csv and tau_vs_frequency.png in `folder`, each written atomically."""
        from tempbench.eval import save_tau_figure

        folder.mkdir(parents=True, exist_ok=True)
        per_sample = pd.DataFrame({"sample": range(len(self.tau)), "label": self.labels.numpy(),
                                   "tau": self.tau.numpy()})
        paths = [write_csv(per_sample, folder / "tau_per_sample.csv"),
                 write_csv(self.summary["table"], folder / "tau_by_class.csv")]
        paths.append(save_tau_figure(self.summary, folder / "tau_vs_frequency.png", title=title))
        return paths


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    from tempbench.atomic import write_atomic

    return write_atomic(path, lambda fh: frame.to_csv(fh, index=False))


def evaluate_run(setup: Any) -> tuple[dict[str, float], TauReport | None]:
    """Final evaluation on backbone features of un-augmented images: the whole (long-tailed) training split is the kNN
    bank and the probe's training set; the balanced test split is evaluated once."""
    from tempbench.eval import evaluate_features, summarize_tau
    from tempbench.loop import extract_features

    data = setup.data
    train = extract_features(setup, data.train_images)
    test = extract_features(setup, data.test_images)
    metrics, per_class = evaluate_features(train, data.train_labels, test, data.test_labels, data.class_counts,
                                           num_classes=data.num_classes, seed=setup.config.seed,
                                           backend=setup.config.eval_backend)
    metrics = {**metrics, **{k: json.dumps(v) for k, v in per_class.items()}}
    tau_report = None
    if setup.strategy.per_sample:
        tau = setup.strategy.temperatures().float().cpu()
        labels = data.train_labels[setup.ssl_idx].cpu()
        tau_report = TauReport(tau, labels, summarize_tau(tau, labels, data.class_counts))
    return metrics, tau_report


def build_row(setup: Any, clock: Any, metrics: dict[str, Any], tau_report: TauReport | None, run_id: str,
              times: dict[str, float]) -> dict[str, Any]:
    """The flat result row of one run."""
    from tempbench.eval import tau_row_fields
    from tempbench.provenance import device_name, git_commit, package_versions

    cfg, data = setup.config, setup.data
    tau_fields = tau_row_fields(tau_report.summary) if tau_report else {"tau_spearman": float("nan"),
                                                                        "tau_by_class": ""}
    last = clock.history[-1] if clock.history else {}
    return {
        "run_id": run_id, "strategy": cfg.strategy, "hparams": json.dumps(setup.strategy.hparams()),
        "dataset": data.name, "long_tail": json.dumps(data.long_tail), "class_counts": json.dumps(data.class_counts),
        "lt_hash": data.lt_hash, "num_train": len(setup.ssl_idx), "num_monitor": len(setup.monitor_idx),
        "seed": cfg.seed, "encoder": cfg.encoder, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer, "lr": cfg.lr, "image_size": data.image_size,
        **metrics, **tau_fields,
        "final_loss": last.get("loss", float("nan")), "final_knn_monitor": last.get("knn_monitor", float("nan")),
        "tau_mean": last.get("tau_mean", float("nan")),
        **times, "device": device_name(setup.device), "versions": json.dumps(package_versions()),
        "git_commit": git_commit(), "config_hash": cfg.hash(), "config": json.dumps(dataclasses.asdict(cfg)),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
