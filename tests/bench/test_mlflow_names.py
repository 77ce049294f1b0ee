"""MLflow that reads at a glance and a store that stays whole: plain tags a filter needs no backticks for, interrupted
runs KILLED with `interrupted=true` (Ctrl-C, SIGTERM, a killed process whose run is trained again), the "MLflow
runs" line only when tracking worked, and one working store when several processes open a fresh folder at once."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tempbench.cli.common import close_runs_on_sigterm, tracking_hint
from tempbench.tracking import (
    INTERRUPTED_TAG,
    RUN_ID_TAG,
    SUPERSEDED_TAG,
    MlflowTracker,
    NestedTracker,
    create_tracker,
    local_store_uri,
    open_run,
)

# mlflow's SQLAlchemy store configures a `noload` relationship, deprecated in SQLAlchemy 2.1 (third-party noise).
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")

TAGS = {"tempbench.strategy": "isogclr", "tempbench.dataset": "digits-lt", "tempbench.seed": "3",
        RUN_ID_TAG: "isogclr-digits-lt-s3-abc"}


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """A store created once: a fresh one costs seconds of schema migrations, which these tests are not about."""
    folder = tmp_path_factory.mktemp("template")
    create_tracker(True, None, folder)
    return folder / "mlflow.db"


@pytest.fixture
def out(tmp_path, migrated):
    """A folder with its own copy of the migrated store (and its `tempbench` experiment)."""
    shutil.copyfile(migrated, tmp_path / "mlflow.db")
    return tmp_path


def store(out):
    from mlflow import MlflowClient

    client = MlflowClient(local_store_uri(out))
    return client, client.get_experiment_by_name("tempbench").experiment_id


def test_plain_tags_filter_without_backticks(out):
    tracker = create_tracker(True, None, out)
    with open_run(tracker, "suite quick", {}) as parent:
        runs = NestedTracker(tracker, parent, tags={"tempbench.suite": "quick"})
        with open_run(runs, "isogclr · digits-lt · s3", {}, tags=TAGS):
            pass
    client, experiment = store(out)
    (found,) = client.search_runs([experiment], filter_string='tags.dataset = "digits-lt" and tags.seed = "3"')
    tags = found.data.tags
    assert (tags["strategy"], tags["dataset"], tags["seed"], tags["suite"]) == ("isogclr", "digits-lt", "3", "quick")
    assert tags["tempbench.dataset"] == "digits-lt"  # the namespaced ones stay
    assert found.info.run_name == "isogclr · digits-lt · s3"


def interrupted(tracker, name, status="FAILED"):
    """A run ended the way the runner ends one that raised (`except BaseException: end_run(FAILED)`), by Ctrl-C."""
    run = tracker.start_run(name, {}, tags=TAGS)
    try:
        raise KeyboardInterrupt
    except BaseException:
        tracker.end_run(run, status)
    return run


def test_ctrl_c_ends_a_run_killed_and_interrupted(out):
    tracker = create_tracker(True, None, out)
    blanket = interrupted(tracker, "runner")
    with pytest.raises(KeyboardInterrupt), open_run(tracker, "sweep", {}) as sweep:
        raise KeyboardInterrupt
    with pytest.raises(RuntimeError), open_run(tracker, "diverged", {}) as failed:
        raise RuntimeError("loss is NaN")
    client, _ = store(out)
    for run in (blanket, sweep):
        found = client.get_run(run.run_id)
        assert found.info.status == "KILLED" and found.data.tags[INTERRUPTED_TAG] == "true"
    found = client.get_run(failed.run_id)  # an error is no interruption
    assert found.info.status == "FAILED" and INTERRUPTED_TAG not in found.data.tags


def test_sigterm_closes_the_run_as_an_interruption(out):
    tracker = create_tracker(True, None, out)
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a fresh `tempbench` process
    try:
        close_runs_on_sigterm()
        assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL  # else the kill below would end pytest
        with pytest.raises(KeyboardInterrupt), open_run(tracker, "run", {}) as run:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the handler raises long before
    finally:
        signal.signal(signal.SIGTERM, previous)
    found = store(out)[0].get_run(run.run_id)
    assert found.info.status == "KILLED" and found.data.tags[INTERRUPTED_TAG] == "true"


def test_a_finished_rerun_closes_the_attempts_before_it(out):
    tracker = create_tracker(True, None, out)
    killed = tracker.start_run("isogclr · digits-lt · s3", {}, tags=TAGS)  # its process died: never ended
    ctrl_c = interrupted(tracker, "isogclr · digits-lt · s3")
    other = tracker.start_run("other run", {}, tags={**TAGS, RUN_ID_TAG: "fixed-digits-lt-s3-def"})
    with open_run(tracker, "isogclr · digits-lt · s3", {}, tags=TAGS) as rerun:
        pass
    client, _ = store(out)
    for run in (killed, ctrl_c):
        found = client.get_run(run.run_id)
        assert found.info.status == "KILLED" and found.data.tags[INTERRUPTED_TAG] == "true"
        assert found.data.tags[SUPERSEDED_TAG] == rerun.run_id
    assert client.get_run(other.run_id).info.status == "RUNNING"  # another run's attempt is none of its business
    finished = client.get_run(rerun.run_id)
    assert finished.info.status == "FINISHED" and INTERRUPTED_TAG not in finished.data.tags


def test_a_reopened_suite_run_loses_its_interrupted_mark(out):
    tracker = create_tracker(True, None, out)
    with pytest.raises(KeyboardInterrupt), open_run(tracker, "suite quick", {}, key="suite:quick"):
        raise KeyboardInterrupt
    with open_run(tracker, "suite quick", {}, key="suite:quick") as parent:
        pass
    found = store(out)[0].get_run(parent.run_id)
    assert found.info.status == "FINISHED" and INTERRUPTED_TAG not in found.data.tags


def test_the_runs_line_only_when_tracking_worked(out, monkeypatch):
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(name, "unset-by-test")  # so teardown removes what the tracker sets
        monkeypatch.delenv(name)
    args = argparse.Namespace(no_tracking=False, tracking_uri=None)
    create_tracker(True, None, out)
    assert tracking_hint(args, out).startswith("MLflow runs: mlflow ui --backend-store-uri")
    dead = argparse.Namespace(no_tracking=False, tracking_uri="http://127.0.0.1:9/tempbench-test")
    with pytest.warns(UserWarning, match="tracking is off"):
        MlflowTracker(dead.tracking_uri)
    assert "tracking failed" in tracking_hint(dead, out) and "127.0.0.1" not in tracking_hint(dead, out)
    assert tracking_hint(argparse.Namespace(no_tracking=True, tracking_uri=None), out) == ""


OPEN_AND_TRACK = textwrap.dedent("""
    import sys, warnings
    from pathlib import Path
    from tempbench.tracking import create_tracker, open_run
    warnings.simplefilter("error")  # a TrackingWarning (the store failed) fails this process
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    tracker = create_tracker(True, None, Path(sys.argv[1]))
    with open_run(tracker, "process " + sys.argv[2], {}) as run:
        tracker.log_metrics(run, {"test/x": 1.0})
    assert tracker.enabled
""")


def test_processes_opening_one_fresh_folder_at_once_leave_one_working_store(tmp_path):
    out = tmp_path / "out"
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_AND_TRACK, str(out), str(i)], stderr=subprocess.PIPE,
                                  text=True) for i in range(2)]  # without the lock one of 2 failed, 3 tries of 3
    errors = [p.communicate(timeout=240)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    client, experiment = store(out)
    runs = client.search_runs([experiment])
    assert sorted(r.info.run_name for r in runs) == ["process 0", "process 1"]
    assert all(r.data.metrics == {"test/x": 1.0} for r in runs)
