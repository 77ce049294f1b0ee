"""Scale-out against real servers (marker `servers`; CI runs them with `pytest -m servers`): several `tempbench`
processes, started separately like workers on several machines, share one study on PostgreSQL and track into one
MLflow server. Training is faked (`fake_worker.py`); storage, workers, heartbeats and tracking are real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tempbench.cli import main
from tempbench.study.sensitivity import WORKER_ATTR, counts
from tempbench.study.storage import open_storage, resolve_storage
from tempbench.tracking import PARENT_RUN_TAG
from tests.bench.study.test_tuning import TUNED

pytestmark = [pytest.mark.servers,
              pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")]

SUITE = """
name = "tiny"
datasets = ["digits-lt", "digits"]
strategies = ["fixed", "sogclr"]
seeds = 2
[run]
epochs = 2
device = "cpu"
progress = false
"""


def sensitivity_args(url: str, out, trials: int, *extra: str) -> list[str]:
    return ["sensitivity", "--strategy", "fixed", "--dataset", "digits-lt", "--trials", str(trials), "--epochs", "3",
            "--storage", url, "--study", "fixed-shared", "--out", str(out), *extra]


def load(url: str, name: str):
    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage(url, None), heartbeat=None))


def wait_all(processes, timeout: float = 240) -> list[int]:
    return [p.wait(timeout=timeout) for p in processes]


def duplicated(study) -> int:
    """Trials beyond the first that ran the same point (retries of a dead worker's trial do not count)."""
    ran = [repr(sorted(t.params.items())) for t in study.trials if t.state == TrialState.COMPLETE]
    return sum(n - 1 for n in Counter(ran).values())


def workers_of(study) -> set[str]:
    return {t.user_attrs[WORKER_ATTR] for t in study.trials if t.state == TrialState.COMPLETE}


OPEN_AT = """import sys, time
from tempbench.study.storage import open_storage, resolve_storage
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all at the same instant, after the imports
open_storage(resolve_storage(sys.argv[1], None))
"""


def test_workers_opening_a_fresh_database_together_all_get_the_storage(postgres):
    """Plain RDBStorage: 2-3 of 4 processes fail here with UniqueViolation on CREATE TYPE studydirection (or
    DuplicateTable); open_storage retries that race."""
    url = postgres.database("schema_race")
    start = f"{time.time() + 12:.3f}"
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_AT, url, start], stderr=subprocess.PIPE)
                 for _ in range(4)]
    try:
        results = [(p.wait(timeout=120), p.stderr.read().decode()[-2000:]) for p in processes]
    finally:  # a timeout or a failure leaves no process behind
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stderr.close()
    assert [code for code, _ in results] == [0, 0, 0, 0], results


def test_three_workers_share_one_study_and_one_tracking_server(postgres, mlflow_server, start_worker, tmp_path):
    url = postgres.database("three_workers")  # fresh: the three race to create Optuna's schema
    with mlflow_server("mlflow_three") as server:
        workers = [start_worker(f"w{i}", *sensitivity_args(url, tmp_path / f"out{i}", 9, "--tracking-uri",
                                                           server.url), seconds=1.5) for i in range(3)]
        assert wait_all(workers) == [0, 0, 0], [(tmp_path / f"w{i}.err").read_text()[-3000:] for i in range(3)]
        study = load(url, "fixed-shared")
        found = counts(study)
        assert (found["complete"], found["failed"], found["running"]) == (9, 0, 0), found
        assert duplicated(study) == 0 and len(workers_of(study)) > 1
        assert all(t.value == t.user_attrs["val_knn200_top1"] != t.user_attrs["knn200_top1"] for t in study.trials
                   if t.state == TrialState.COMPLETE)  # Optuna holds the validation metric, never the test one
        client = MlflowClient(server.url)
        runs = client.search_runs([client.get_experiment_by_name("tempbench").experiment_id])
        parents = {r.info.run_id for r in runs if PARENT_RUN_TAG not in r.data.tags}
        trials = [r for r in runs if PARENT_RUN_TAG in r.data.tags]
        # one parent per worker at most: three workers started at the same instant each create the study's parent
        assert 1 <= len(parents) <= 3 and len(trials) == 9 and {r.data.tags[PARENT_RUN_TAG] for r in trials} <= parents
        assert all(r.info.run_name.startswith("fixed-shared #") and "tau=" in r.info.run_name for r in trials)
        assert all(r.data.tags["tempbench.trial_state"] == "COMPLETE" for r in trials)
        assert all([a.path for a in client.list_artifacts(r.info.run_id)] == ["config.json"] for r in trials)
        assert all("report" in [a.path for a in client.list_artifacts(p)] for p in parents)
    print(f"3 workers: {found}; duplicated {duplicated(study)}; trials per worker "
          f"{Counter(t.user_attrs[WORKER_ATTR] for t in study.trials).most_common()}; MLflow: {len(parents)} parents, "
          f"{len(trials)} nested trial runs, {len(trials)} config.json artifacts")


def test_a_killed_workers_trial_is_failed_by_heartbeat_and_run_again(postgres, start_worker, tmp_path):
    url = postgres.database("killed_worker")
    args = [*sensitivity_args(url, tmp_path / "out", 6, "--no-tracking", "--heartbeat", "1")]
    workers = [start_worker(f"k{i}", *args, seconds=4) for i in range(3)]
    victim, number = wait_for_a_running_trial(url, workers)
    os.kill(victim.pid, signal.SIGKILL)
    survivors = [w for w in workers if w is not victim]
    assert wait_all(survivors) == [0, 0], [(tmp_path / f"{w.name}.err").read_text()[-3000:] for w in survivors]
    study = load(url, "fixed-shared")
    found = counts(study)
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == number]
    assert study.trials[number].state == TrialState.FAIL and len(retry) == 1
    assert retry[0].state == TrialState.COMPLETE and retry[0].params == study.trials[number].params
    assert retry[0].user_attrs[WORKER_ATTR] != f"{study.trials[number].user_attrs[WORKER_ATTR]}"
    assert (found["complete"], found["failed"], found["retried"], found["running"]) == (6, 1, 1, 0), found
    assert duplicated(study) == 0
    print(f"killed worker: trial {number} failed by heartbeat, re-run as trial {retry[0].number}; {found}")


def wait_for_a_running_trial(url: str, workers, timeout: float = 120):
    """(a worker process, the number of the trial it is running) once one is mid-trial."""
    deadline = time.monotonic() + timeout
    pids = {w.pid: w for w in workers}
    while time.monotonic() < deadline:
        try:
            for t in load(url, "fixed-shared").get_trials(states=(TrialState.RUNNING,)):
                pid = int(str(t.user_attrs.get(WORKER_ATTR, ":0")).rpartition(":")[2])
                if pid in pids and t.intermediate_values:  # mid-trial: it has reported an epoch
                    return pids[pid], t.number
        except KeyError:  # the study does not exist yet
            pass
        time.sleep(0.2)
    raise AssertionError("no worker started a trial")


def test_a_dead_tracking_server_warns_once_per_worker_and_never_stops_the_study(postgres, mlflow_server,
                                                                               start_worker, tmp_path):
    url = postgres.database("dead_tracking")
    with mlflow_server("mlflow_dead") as server:
        args = sensitivity_args(url, tmp_path / "out", 6, "--tracking-uri", server.url)
        workers = [start_worker(f"d{i}", *args, seconds=2) for i in range(2)]
        wait_for_a_running_trial(url, workers)
        time.sleep(1)
    # the server is gone (stopped by its PID) while the workers go on
    assert wait_all(workers) == [0, 0]
    errs = [(tmp_path / f"d{i}.err").read_text() for i in range(2)]
    # one line each: "tempbench sensitivity: warning: MLflow tracking to URL failed (...); tracking is off ..."
    assert [e.count("warning: MLflow tracking to") for e in errs] == [1, 1], errs
    assert counts(load(url, "fixed-shared"))["complete"] == 6


def test_a_suite_swept_by_three_processes_trains_every_run_once(postgres, start_worker, tmp_path, capsys):
    url = postgres.database("sweep")
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    workers = [start_worker(f"s{i}", "run", "--suite", str(suite), "--storage", url, "--out",
                            str(tmp_path / f"m{i}"), "--no-tracking", seconds=1) for i in range(3)]
    assert wait_all(workers) == [0, 0, 0], [(tmp_path / f"s{i}.err").read_text()[-3000:] for i in range(3)]
    study = load(url, "suite-tiny")
    runs = [t.user_attrs["tempbench.run_id"] for t in study.trials if t.state == TrialState.COMPLETE]
    found = counts(study)
    assert len(runs) == len(set(runs)) == 8 and found["failed"] == 0 and len(workers_of(study)) > 1
    assert main(["leaderboard", "--storage", url, "--out", str(tmp_path / "board"), "--json"]) == 0
    assert "fixed" in capsys.readouterr().out and (tmp_path / "board" / "leaderboard.md").is_file()
    print(f"sweep: 8 runs trained by {len(workers_of(study))} processes, duplicates {len(runs) - len(set(runs))}, "
          f"{found}")


def test_a_tuned_suite_swept_by_two_processes_on_postgresql(postgres, start_worker, tmp_path):
    """Both rulesets and the τ-matched controls through one PostgreSQL database: each phase (tuning, reporting,
    controls) is a sweep of its own there, every run trained once, and both commands reach the same choices."""
    url = postgres.database("tuned_sweep")
    suite = tmp_path / "tiny-tuned.toml"
    suite.write_text(TUNED)  # test_tuning.py's suite: here training is faked
    workers = [start_worker(f"t{i}", "run", "--suite", str(suite), "--storage", url, "--out",
                            str(tmp_path / f"t{i}"), "--no-tracking", "--no-figures", "--devices", "cpu", seconds=1)
               for i in range(2)]
    assert wait_all(workers, timeout=480) == [0, 0], [(tmp_path / f"t{i}.err").read_text()[-3000:] for i in range(2)]
    for name, expected in (("tuning-tiny-tuned", 4), ("controls-tiny-tuned", 4)):
        runs = [t.user_attrs["tempbench.run_id"] for t in load(url, name).trials if t.state == TrialState.COMPLETE]
        assert len(runs) == len(set(runs)) == expected, name
    reporting = [t.user_attrs["tempbench.run_id"] for t in load(url, "suite-tiny-tuned").trials
                 if t.state == TrialState.COMPLETE]
    assert len(reporting) == len(set(reporting)) >= 6  # defaults 4 + tuned 4, less any tuned choice = its defaults
    records = [json.loads((tmp_path / f"t{i}" / "rulesets.json").read_text()) for i in range(2)]
    assert records[0]["cells"] == records[1]["cells"] and records[0]["tau_matched"] == records[1]["tau_matched"]


def test_one_training_per_device_in_worker_processes(start_worker, tmp_path):
    """`--devices cpu,cpu` without --storage: two local worker processes on a journal file in --out."""
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE.replace('datasets = ["digits-lt", "digits"]', 'datasets = ["digits-lt"]'))
    out = tmp_path / "out"
    worker = start_worker("devices", "run", "--suite", str(suite), "--devices", "cpu,cpu", "--out", str(out),
                          "--no-tracking", "--json", seconds=2)
    assert worker.wait(timeout=240) == 0, (tmp_path / "devices.err").read_text()[-3000:]
    study = load(f"journal:{out / 'optuna-journal.log'}", "suite-tiny")
    pids = {t.user_attrs["tempbench.row"]["worker_pid"] for t in study.trials if t.state == TrialState.COMPLETE}
    assert counts(study)["complete"] == 4 and len(pids) == 2
    assert len((out / "runs.csv").read_text().splitlines()) == 5
