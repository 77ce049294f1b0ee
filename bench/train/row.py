"""A finished run -> its evaluation (every registered metric), τ analytics and the flat result row."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from tempbench.datasets.files import write_atomic
from tempbench.eval import Evaluation, LabelledFeatures, evaluate, summarize_tau, tau_row_fields
from tempbench.provenance import device_name, git_commit, package_versions

from .artifacts import ArtifactWarning, write_or_warn
from .image_text import DensityReport, retrieval
from .loop import sharded_features
from .setup import Setup

PER_CLASS = ("knn200", "linear")  # classifiers whose per-class accuracy the row keeps (JSON lists)


@dataclasses.dataclass
class TauReport:
    """Per-sample τ of a per-sample strategy with its class analytics (tempbench.eval.summarize_tau)."""

    tau: torch.Tensor  # (N_train,) CPU
    labels: torch.Tensor  # (N_train,) CPU
    summary: dict[str, Any]

    def write(self, folder: Path, title: str = "") -> list[Path]:
        """tau_per_sample.csv, tau_by_class.csv and the τ-vs-frequency figure in `folder`, each atomically; a file
        that cannot be written is an `ArtifactWarning` naming it, and the others are still written."""
        import pandas as pd  # optional here: the training path runs where only torch and numpy are installed

        from tempbench.eval import save_tau_figure

        per_sample = pd.DataFrame({"sample": range(len(self.tau)), "label": self.labels.numpy(),
                                   "tau": self.tau.numpy()})
        writers = {"tau_per_sample.csv": lambda p: write_atomic(p, lambda fh: per_sample.to_csv(fh, index=False)),
                   "tau_by_class.csv": lambda p: write_atomic(p, lambda fh: self.summary["table"].to_csv(fh,
                                                                                                     index=False)),
                   "tau_vs_frequency.png": lambda p: save_tau_figure(self.summary, p, title=title)}
        return [p for name, write in writers.items() if (p := write_or_warn(folder / name, write)) is not None]





def build_evaluations(setup: Setup) -> dict[str, Evaluation]:
    """{"test": ..., "val": ... (only with a held-out slice)}: the bank is always the images contrastive training
    saw; the test split is evaluated once, the held-out slice is what selection may read."""
    data, cfg = setup.data, setup.config
    bank = LabelledFeatures(sharded_features(setup, setup.images), data.train_labels[setup.train_idx])
    balanced = None
    if data.uncut_train_images is not None:
        balanced = LabelledFeatures(sharded_features(setup, data.uncut_train_images), data.uncut_train_labels)
    options = {"num_classes": data.num_classes, "seed": cfg.seed, "backend": cfg.eval_backend}
    out = {"test": Evaluation(bank, LabelledFeatures(sharded_features(setup, data.test_images), data.test_labels),
                              data.class_counts, balanced_bank=balanced, **options)}
    if len(setup.val_idx):
        held = LabelledFeatures(sharded_features(setup, data.train_images[setup.val_idx]),
                                data.train_labels[setup.val_idx])
        out["val"] = Evaluation(bank, held, data.class_counts, **options)
    return out


def evaluate_run(setup: Setup) -> tuple[dict[str, Any], TauReport | DensityReport | None]:
    """Every registered metric (test, and val where a slice is held out), per-class accuracies, the probe's
    diagnostics, and for per-sample-τ strategies the τ analytics. Under torchrun every process helps extract the
    features; rank 0 alone computes the metrics (the others get ({}, None))."""
    if setup.pairs is not None:
        return evaluate_image_text_run(setup)
    evaluations = build_evaluations(setup)
    if not setup.world.main:
        return {}, None
    metrics: dict[str, Any] = {}
    for split, ev in evaluations.items():
        metrics |= evaluate(ev, split=split)
    test = evaluations["test"]
    metrics |= probe_diagnostics(test)
    metrics |= {f"per_class_{c}": json.dumps(test.per_class(_predictions(test, c))) for c in PER_CLASS}
    tau_report = None
    tau = final_temperatures(setup)
    if tau is not None:
        labels = setup.data.train_labels[setup.train_idx].cpu()
        tau_report = TauReport(tau, labels, summarize_tau(tau, labels, setup.data.class_counts))
    return metrics, tau_report


def final_temperatures(setup: Setup) -> torch.Tensor | None:
    """The per-sample τ for the τ analytics, or None: for global-τ strategies, and, with an ArtifactWarning, when
    some τ is not finite (e.g. TaU's t/σ(r) once σ(r) underflows float32). The row is kept either way."""
    if not setup.strategy.per_sample_tau:
        return None
    tau = setup.strategy.temperatures().float().cpu()
    bad = int((~torch.isfinite(tau)).sum())
    if bad:
        warnings.warn(f"{bad} of {tau.numel()} per-sample temperatures are not finite (largest finite: "
                      f"{float(tau[torch.isfinite(tau)].max()) if bad < tau.numel() else float('nan'):.3g}); "
                      f"τ analytics skipped, the row is kept", ArtifactWarning, stacklevel=2)
        return None
    return tau


def evaluate_image_text_run(setup: Setup) -> tuple[dict[str, Any], DensityReport | None]:
    """Retrieval both ways on the test and val splits; for per-pair-τ strategies τ against caption density."""
    if not setup.world.main:
        return {}, None
    cfg = setup.config
    metrics = retrieval(setup.model, setup.data, cfg, setup.device)
    report = None
    tau = final_temperatures(setup)
    if tau is not None:
        report = DensityReport.of(tau, setup.pairs, setup.data, cfg.text_tower)
        metrics |= report.row_fields()
    return metrics, report


def _predictions(ev: Evaluation, classifier: str) -> torch.Tensor | None:
    return ev.knn(200, 0.1) if classifier == "knn200" else ev.probe_predictions("full")


def probe_diagnostics(ev: Evaluation) -> dict[str, Any]:
    """The full probe's chosen λ and its validation accuracy, the λ grid it searched (and whether the choice sits at
    an edge of it), and how its final fit converged (iterations, final max-abs gradient, converged or not)."""
    probe = ev.probe("full")
    return {"linear_wd": float(probe.wd), "linear_val_top1": float(probe.val_top1),
            "linear_wd_grid": json.dumps(list(probe.wd_grid)), "linear_wd_at_edge": bool(probe.at_edge),
            "linear_iterations": int(probe.iterations), "linear_grad_norm": float(probe.grad_norm),
            "linear_converged": bool(probe.converged), "linear_val_converged": bool(probe.val_converged)}


def data_fields(setup: Setup, tau_report: TauReport | DensityReport | None) -> dict[str, Any]:
    """What the row says about the training data: the long-tail cut and class counts (views), the pairs and images
    (image_text); plus the class τ analytics of views runs."""
    cfg, data = setup.config, setup.data
    if setup.pairs is not None:
        return {"num_train": len(setup.pairs.captions), "num_train_images": len(setup.images), "num_val": 0,
                "text_tower": cfg.text_tower}
    tau = tau_row_fields(tau_report.summary) if tau_report else {"tau_spearman": float("nan"), "tau_by_class": ""}
    return {"long_tail": json.dumps(data.long_tail), "class_counts": json.dumps(data.class_counts),
            "lt_hash": data.lt_hash, "subset_seed": cfg.subset_seed, "num_train": len(setup.train_idx),
            "num_val": len(setup.val_idx), **tau}


def build_row(setup: Setup, progress: Any, metrics: dict[str, Any], tau_report: TauReport | None, run_id: str,
              times: dict[str, float]) -> dict[str, Any]:
    """The flat result row of one run: what ran (resolved configuration, data, provenance) and every number."""
    cfg, data = setup.config, setup.data
    last = progress.history[-1] if progress.history else {}
    return {
        "run_id": run_id, "strategy": cfg.strategy, "hyperparameters": json.dumps(cfg.hyperparameters),
        "dataset": data.name, "pairing": cfg.pairing, **data_fields(setup, tau_report), "seed": cfg.seed,
        "encoder": cfg.encoder, "epochs": cfg.epochs,
        "batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr, "image_size": data.image_size,
        **metrics,
        "final_loss": last.get("loss", float("nan")), "final_knn_monitor": last.get("knn_monitor", float("nan")),
        "tau_mean": last.get("tau_mean", float("nan")), "history": json.dumps(progress.history),
        **times, "device": device_name(setup.device), "versions": json.dumps(package_versions()),
        "git_commit": git_commit(), "config_hash": cfg.hash(), "config": json.dumps(cfg.to_dict()),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
