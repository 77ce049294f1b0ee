"""A finished run as one flat result row, and how the run appears in the tracking store (name, tags, params, final
metrics, artifacts). The row is what leaderboards aggregate; every field is a plain value or a JSON string."""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tempbench.config import EXECUTION_SETTINGS, RunConfig
from tempbench.eval import list_metrics
from tempbench.provenance import device_name, git_commit, git_state, package_versions
from tempbench.strategies import Strategy
from tempbench.tracking import Tracker
from tempbench.util import ArtifactWarning, FewVisitsWarning, TauAtBoundWarning, slug


def run_id(config: RunConfig) -> str:
    """`strategy-dataset-sSEED-HASH`: readable, and unique per resolved configuration and seed."""
    return f"{config.strategy}-{slug(config.dataset)[-40:]}-s{config.seed}-{config.hash()}"


def build_row(setup: Any, history: list[dict[str, Any]], metrics: dict[str, Any], report: Any, run_id: str,
              times: dict[str, float]) -> dict[str, Any]:
    """The flat result row of one run: what ran (resolved configuration, what the pairing says about the data,
    provenance) and every number (`metrics`, the last epoch's loss, monitor and mean τ, the per-epoch history)."""
    cfg, data = setup.config, setup.data
    last = history[-1] if history else {}
    return {
        "run_id": run_id, "strategy": cfg.strategy, "hyperparameters": json.dumps(cfg.hyperparameters),
        "dataset": data.name, "pairing": cfg.pairing.name, **cfg.pairing.row_fields(setup, report), "seed": cfg.seed,
        "encoder": cfg.encoder, "epochs": cfg.epochs,
        "batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr, "image_size": data.image_size,
        **metrics,
        "final_loss": last.get("loss", float("nan")), "final_knn_monitor": last.get("knn_monitor", float("nan")),
        "tau_mean": last.get("tau_mean", float("nan")), **visit_fields(setup), **tau_bound_fields(setup),
        "history": json.dumps(history),
        **times, "device": device_name(setup.device), "versions": json.dumps(package_versions()),
        "git_commit": git_commit(), "git_dirty": git_state().dirty, "git_diff_hash": git_state().diff_hash,
        "config_hash": cfg.hash(), "config": json.dumps(cfg.to_dict()),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


MIN_MEAN_VISITS = 10  # fewer updates per state entry on average, and per-sample u_i / τ_i cannot have settled


def visit_fields(setup: Any) -> dict[str, float]:
    """`state_visits_mean`, `state_visits_min`: updates per strategy state entry (u_i, τ_i) over the run, over the
    entries the pairing's state index can reach (`Pairing.state_entries`: each sample for views, each pair for
    image_text; with `state_index="image_caption"` the N_img image entries of the image side and the M pair entries
    of the text side, N_img + M in all); NaN for a strategy without per-sample state. A per-sample strategy below
    `MIN_MEAN_VISITS` on average gets a `FewVisitsWarning` (the row is kept): its τ_i mostly say how often each
    entry was visited."""
    if not setup.strategy.per_sample_state:
        return {"state_visits_mean": float("nan"), "state_visits_min": float("nan")}
    visits = setup.pairing.state_entries(setup.train, setup.visits).double()
    mean, least = float(visits.mean()), float(visits.min())
    if mean < MIN_MEAN_VISITS:
        warnings.warn(f"{setup.config.strategy}: its {len(visits)} state entries were updated {mean:.1f} times on "
                      f"average (fewest {least:.0f}); per-sample state (u_i, and τ_i where learned) cannot have "
                      f"settled in under {MIN_MEAN_VISITS} updates: train longer (for image–caption data, "
                      f"epoch_by='pairs' visits every pair each epoch)", FewVisitsWarning, stacklevel=2)
    return {"state_visits_mean": mean, "state_visits_min": least}


BOUND_RTOL = 1e-6  # a τ within this relative distance of a bound sits at it (float32 state rounds the bound itself)
MOST_AT_BOUND = 0.5  # a larger share of the τ entries at one bound, and the run is a global τ there in disguise


def share_at(tau: Tensor, bound: float, rtol: float = BOUND_RTOL) -> float:
    """The share (0..1) of the entries of `tau` (any shape) within relative `rtol` of `bound`; an infinite bound
    counts the entries equal to it. NaN for an empty tensor."""
    tau = tau.detach().double()
    return float(torch.isclose(tau, torch.full_like(tau, bound), rtol=rtol, atol=0.0).double().mean())


def tau_at_bounds(strategy: Strategy, tau: Tensor) -> dict[str, float]:
    """`tau_at_min`, `tau_at_max`: the share of the τ entries `tau` (the strategy's, over the entries its state can
    hold) at each end of `strategy.tau_bounds()` (`share_at`); NaN for a strategy without per-sample τ, whose one τ
    sits at a bound by design or not at all."""
    if not strategy.per_sample_tau:
        return {"tau_at_min": float("nan"), "tau_at_max": float("nan")}
    low, high = strategy.tau_bounds()
    return {"tau_at_min": share_at(tau, low), "tau_at_max": share_at(tau, high)}


def tau_bound_fields(setup: Any) -> dict[str, float]:
    """`tau_at_bounds` of the finished run's τ over the entries its state can hold (`Pairing.state_entries`, as
    `visit_fields`: for image_text both columns). More than `MOST_AT_BOUND` of them at one bound gets a
    `TauAtBoundWarning` (the row is kept): the per-sample strategy ran as a global τ at that bound."""
    strategy = setup.strategy
    fields = tau_at_bounds(strategy, setup.pairing.state_entries(setup.train, strategy.temperatures()))
    if strategy.per_sample_tau:
        shares = (fields["tau_at_min"], fields["tau_at_max"])
        for name, share, bound in zip(("τ_min", "τ_max"), shares, strategy.tau_bounds()):
            if share > MOST_AT_BOUND:  # one warning: with τ_min = τ_max both shares are the same entries
                warnings.warn(f"{setup.config.strategy}: {100 * share:.0f} % of its τ_i ended at {name} = {bound:g}: "
                              f"it behaves like a global τ of {bound:g}; compare with fixed at τ = {bound:g}",
                              TauAtBoundWarning, stacklevel=2)
                break
    return fields


# ---- tracking -------------------------------------------------------------------------------------------------------
def run_name(config: RunConfig) -> str:
    """What the MLflow UI lists, short enough that its column never cuts the seed: `isogclr · digits-lt · s3`
    (the run id, with its hash, is a tag)."""
    return f"{config.strategy} · {config.dataset} · s{config.seed}"


def run_tags(config: RunConfig, name: str) -> dict[str, str]:
    """Tags a researcher filters runs on, and the UI's Source column."""
    return {"tempbench.strategy": config.strategy, "tempbench.dataset": config.dataset,
            "tempbench.seed": str(config.seed), "tempbench.pairing": config.pairing.name,
            "tempbench.config_hash": config.hash(), "tempbench.run_id": name, "tempbench.device": config.device,
            "mlflow.source.name": "tempbench", "mlflow.source.type": "LOCAL",  # the UI's Source column
            "mlflow.source.git.commit": git_commit()}


def tracked_params(setup: Any) -> dict[str, Any]:
    """The resolved configuration (what decides the results, not how it ran) plus what the data resolved to."""
    config = {k: v for k, v in setup.config.to_dict().items() if k not in EXECUTION_SETTINGS}
    return {**config, "num_train": len(setup.train.train_idx), "num_val": len(setup.train.val_idx),
            "image_size": setup.data.image_size}


def final_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The row's numbers under names that cannot collide with the per-epoch `train/...` curves: registered
    metrics as `test/NAME` or `val/NAME`, every other finite outcome under its row name (`final_loss`,
    `time_train_s`). MLflow's charts group keys by prefix, sections in alphabetical order and unprefixed keys last,
    so a run opens on `test`, then `train`, `val` and these diagnostics. Settings (batch size, seed, image size,
    ...) are params, not metrics: they would fill the UI's charts with one bar each."""
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
            out[key] = float(value)
    return out


def write_artifacts(tracker: Tracker, handle: Any, setup: Any, report: Any, out_dir: Path | None, name: str) -> None:
    """Track the resolved config (`config.json`) and, for per-sample-τ strategies, the pairing's τ report (tables
    and figure, kept in out_dir/tau/<run>). Without an out_dir (e.g. study trials) the files pass through a temporary
    folder: the tracking store keeps its own copy. A file that cannot be written is a warning naming it."""
    try:  # a full or read-only disk after training costs these files, never the run's row
        with tempfile.TemporaryDirectory(prefix="tempbench-artifacts-") as tmp:
            config_path = Path(tmp) / "config.json"
            config_path.write_text(json.dumps(tracked_params(setup), indent=2, sort_keys=True, default=str))
            tracker.log_artifact(handle, config_path)
            if report is None:
                return
            folder = out_dir / "tau" / name if out_dir is not None else Path(tmp) / "tau"
            folder.mkdir(parents=True, exist_ok=True)
            title = f"{setup.config.strategy} on {setup.data.name}, seed {setup.config.seed}"
            for path in report.write(folder, title=title):
                tracker.log_artifact(handle, path, artifact_dir="tau")
    except OSError as exc:
        warnings.warn(f"the artifacts of run {name} (config.json, the τ report) could not be written: "
                      f"{exc.strerror or exc} ({exc.filename or 'a temporary folder'}); the row is kept",
                      ArtifactWarning, stacklevel=2)
