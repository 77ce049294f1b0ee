"""The tracking layer: MlflowTracker on a temporary SQLite store, NullTracker, and a dead server."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from tempbench.tracking import (
    PARAM_VALUE_LIMIT,
    PARENT_RUN_TAG,
    MlflowTracker,
    NestedTracker,
    NullTracker,
    RunHandle,
    TrackingWarning,
    create_tracker,
    flatten_params,
    local_store_uri,
    open_run,
    ui_command,
)

# mlflow's SQLAlchemy store configures a `noload` relationship, deprecated in SQLAlchemy 2.1 (third-party noise).
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")


@dataclass
class OptimConfig:
    lr: float = 0.3
    betas: tuple = (0.9, 0.999)


def test_flatten_params_nests_dots_stringifies_and_truncates():
    flat = flatten_params({"model": {"encoder": {"width": 64}}, "optim": OptimConfig(), "note": "x" * 10_000,
                           "bad key!": None})
    assert flat["model.encoder.width"] == "64"
    assert flat["optim.lr"] == "0.3" and flat["optim.betas"] == "(0.9, 0.999)"
    assert len(flat["note"]) == PARAM_VALUE_LIMIT and flat["note"].endswith("...")
    assert "bad key_" not in flat  # None says nothing: left out


def test_mlflow_tracker_records_nested_runs_params_metrics_and_artifacts(tmp_path):
    from mlflow import MlflowClient

    out = tmp_path / "out"
    tracker = create_tracker(True, None, out)
    config = {"strategy": {"name": "fixed", "tau": 0.2}, "data": {"card": "digits"}}
    artifact = tmp_path / "tau.csv"
    artifact.write_text("sample,tau\n0,0.2\n")
    with open_run(tracker, "sweep", {"suite": "smoke"}) as sweep:
        children = NestedTracker(tracker, sweep, tags={"optuna.trial": "7"})
        for seed in range(2):
            with open_run(children, f"fixed-seed{seed}", {**config, "seed": seed}) as run:
                for epoch in range(3):
                    children.log_metrics(run, {"loss": 4.0 - epoch, "knn_top1": 0.1 * epoch}, step=epoch)
                children.log_artifact(run, artifact, artifact_dir="tau")

    client = MlflowClient(local_store_uri(out))
    experiment = client.get_experiment_by_name("tempbench")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"sweep", "fixed-seed0", "fixed-seed1"}
    parent_id = runs["sweep"].info.run_id
    for seed in range(2):
        child = runs[f"fixed-seed{seed}"]
        assert child.data.tags[PARENT_RUN_TAG] == parent_id and child.data.tags["optuna.trial"] == "7"
        assert child.data.params["strategy.tau"] == "0.2" and child.data.params["data.card"] == "digits"
        assert child.data.params["seed"] == str(seed)
        history = client.get_metric_history(child.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [(0, 4.0), (1, 3.0), (2, 2.0)]
        assert [f.path for f in client.list_artifacts(child.info.run_id, "tau")] == ["tau/tau.csv"]
        assert child.info.status == "FINISHED"
    assert PARENT_RUN_TAG not in runs["sweep"].data.tags
    assert (out / "mlflow.db").is_file() and (out / "mlartifacts").is_dir()
    assert local_store_uri(out) in ui_command(out)


def test_open_run_marks_a_failed_run(tmp_path):
    from mlflow import MlflowClient

    tracker = create_tracker(True, None, tmp_path)
    with pytest.raises(RuntimeError), open_run(tracker, "diverged", {}) as run:
        raise RuntimeError("loss is NaN")
    assert MlflowClient(local_store_uri(tmp_path)).get_run(run.run_id).info.status == "FAILED"


def test_null_tracker_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = create_tracker(False, None, tmp_path / "out")
    assert isinstance(tracker, NullTracker)
    with open_run(tracker, "sweep", {"a": {"b": 1}}) as sweep, open_run(tracker, "child", {}, parent=sweep) as run:
        tracker.log_metrics(run, {"loss": 1.0}, step=0)
        tracker.log_artifact(run, tmp_path / "missing.txt")
    assert run == RunHandle("child") and list(tmp_path.iterdir()) == []


def test_unreachable_server_warns_once_and_turns_into_a_no_op(monkeypatch):
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(name, "unset-by-test")  # so teardown removes what the tracker sets
        monkeypatch.delenv(name)
    start = time.perf_counter()
    with pytest.warns(TrackingWarning, match="127.0.0.1:9") as record:
        tracker = MlflowTracker("http://127.0.0.1:9")  # loopback, nothing listens: connection refused
        with open_run(tracker, "sweep", {"a": 1}) as sweep, open_run(tracker, "child", {}, parent=sweep) as run:
            tracker.log_metrics(run, {"loss": 1.0}, step=0)
            tracker.log_artifact(run, __file__)
    assert len(record) == 1 and not tracker.enabled
    assert sweep.run_id is None and run.run_id is None
    assert time.perf_counter() - start < 5.0
