"""The runner's MLflow tracking end to end on digits (CPU, seconds per run): params, per-epoch and final metrics,
artifacts, nesting under a sweep, `--no-tracking`, and a dead server that must not cost the result row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tempbench.cli import main
from tempbench.config import resolve_run_config
from tempbench.leaderboard import read_rows
from tempbench.study.sweep import run_sweep
from tempbench.tracking import PARENT_RUN_TAG, TrackingWarning, create_tracker, local_store_uri, open_run
from tempbench.train import train

pytestmark = [pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"),
              pytest.mark.usefixtures("quick_probe")]  # the plumbing is under test here, not the probe

# digits-lt has 588 training images: batch 256 is 2 steps an epoch
TINY = {"encoder": "small_cnn", "projector_hidden": 32, "projector_out": 16, "batch_size": 256, "epochs": 1,
        "device": "cpu", "progress": False, "lr": 0.1}
TINY_SET = [part for key, value in TINY.items() if key != "epochs" for part in ("--set", f"{key}={json.dumps(value)}")]
EPOCH_METRICS = {f"train/{k}" for k in ("loss", "lr", "views_per_s", "tau_mean", "tau_min", "tau_max", "tau_q10",
                                        "tau_q50", "tau_q90", "knn_monitor", "batch_tau_mean")}


def tiny(strategy: str, **settings):
    return resolve_run_config(strategy, "digits-lt", settings={**TINY, **settings})


def client_and_runs(out):
    from mlflow import MlflowClient

    client = MlflowClient(local_store_uri(out))
    experiment = client.get_experiment_by_name("tempbench")
    return client, {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


def test_one_epoch_run_is_tracked_with_params_metrics_and_artifacts(tmp_path):
    row = train(tiny("isogclr", val_fraction=0.1, monitor_every=1), out_dir=tmp_path,
                tracker=create_tracker(True, None, tmp_path))

    client, runs = client_and_runs(tmp_path)
    run = runs["isogclr · digits-lt · s0"]
    assert run.info.status == "FINISHED" and PARENT_RUN_TAG not in run.data.tags
    tags = run.data.tags
    assert tags["tempbench.run_id"] == row["run_id"] and tags["tempbench.config_hash"] == row["config_hash"]
    assert tags["tempbench.strategy"] == "isogclr" and tags["tempbench.seed"] == "0"
    assert (tags["strategy"], tags["dataset"], tags["seed"]) == ("isogclr", "digits-lt", "0")  # no backticks needed
    assert "mlflow.source.git.commit" in tags and tags["mlflow.source.name"] == "tempbench"
    params = run.data.params
    assert params["strategy"] == "isogclr" and params["dataset"] == "digits-lt" and params["batch_size"] == "256"
    assert params["hyperparameters.rho"] == "0.4" and "hyperparameters.tau_init" in params  # resolved defaults
    assert params["long_tail"] == "0.1" and params["image_size"] == "8"  # resolved, never None
    assert not {"progress", "log_every", "device"} & set(params) and "None" not in params.values()
    assert set(run.data.metrics) >= EPOCH_METRICS | {"test/knn200_top1", "test/linear_top1", "val/knn200_top1",
                                                     "test/tau_spearman", "time_train_s", "final_loss"}
    assert not {"loss", "lr", "knn200_top1"} & set(run.data.metrics)  # nothing collides
    assert run.data.metrics["tau_mean"] == pytest.approx(row["tau_mean"])  # the row's, not the curve's
    assert not {"batch_size", "seed", "image_size", "num_train"} & set(run.data.metrics)  # params
    sections = sorted({k.rpartition("/")[0] for k in run.data.metrics if "/" in k})
    assert sections[0] == "test"  # MLflow's charts: prefixed sections alphabetically, unprefixed ones last
    assert run.data.metrics["test/knn200_top1"] == pytest.approx(row["knn200_top1"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1]  # epoch 1
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"config.json", "tau"}
    tau = {f.path for f in client.list_artifacts(run.info.run_id, "tau")}
    assert tau == {"tau/tau_per_sample.csv", "tau/tau_by_class.csv", "tau/tau_vs_frequency.png"}
    (tmp_path / "download").mkdir()
    local = client.download_artifacts(run.info.run_id, "config.json", str(tmp_path / "download"))
    resolved = json.loads(Path(local).read_text())
    assert resolved["hyperparameters"]["rho"] == 0.4 and resolved["num_train"] == row["num_train"]


@pytest.mark.slow  # full training runs
def test_sweep_runs_are_nested_under_one_reused_parent(tmp_path):
    configs = [tiny("fixed", seed=seed) for seed in (0, 1)]
    tracker = create_tracker(True, None, tmp_path)
    for _ in range(2):  # a rerun reopens the same parent instead of adding another
        with open_run(tracker, "suite tiny", {"suite": "tiny"}, key="suite:tiny") as parent:
            run_sweep(configs, tmp_path, tracker, parent, progress=False)

    _, runs = client_and_runs(tmp_path)
    parent = runs.pop("suite tiny")
    assert PARENT_RUN_TAG not in parent.data.tags and parent.data.params["suite"] == "tiny"
    assert len(runs) == 2 and {r.data.tags[PARENT_RUN_TAG] for r in runs.values()} == {parent.info.run_id}
    assert {r.data.params["seed"] for r in runs.values()} == {"0", "1"}
    assert len(read_rows(tmp_path / "runs.csv")) == 2


def train_cli(out, *extra: str) -> int:
    return main(["train", "--strategy", "fixed", "--dataset", "digits-lt", "--epochs", "1", "--out", str(out),
                 *TINY_SET, *extra])


@pytest.mark.slow  # full training runs
def test_no_tracking_writes_no_mlflow_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # MLflow's own default store would be ./mlruns
    assert train_cli(tmp_path / "out", "--no-tracking") == 0
    assert len(read_rows(tmp_path / "out" / "runs.csv")) == 1
    names = {p.name for p in tmp_path.rglob("*")}
    assert not names & {"mlflow.db", "mlartifacts", "mlruns"}


def test_unreachable_tracking_server_keeps_the_result_row(tmp_path, monkeypatch, capsys):
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(name, "unset-by-test")  # so teardown removes what the tracker sets
        monkeypatch.delenv(name)
    with pytest.warns(TrackingWarning, match="127.0.0.1:9") as record:
        assert train_cli(tmp_path, "--tracking-uri", "http://127.0.0.1:9") == 0
    assert len(record) == 1  # warned once, then tracking stayed off
    rows = read_rows(tmp_path / "runs.csv")
    assert list(rows["strategy"]) == ["fixed"] and 0.0 <= float(rows["knn200_top1"].iloc[0]) <= 100.0
    assert "kNN-200 top-1" in capsys.readouterr().out
