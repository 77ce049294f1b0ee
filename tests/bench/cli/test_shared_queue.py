"""A suite on a folder is a shared queue: `tempbench run` commands on one --out split the suite's runs (none is
trained twice, each prints the whole leaderboard), and a run's row does not depend on how many workers trained
beside it. The commands are real processes (the CLI, its spawned workers, the journal file in --out); the only
change is a linear probe capped at 5 L-BFGS iterations, as the `quick_probe` fixture does in-process: the
plumbing is under test here, not the probe."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from tempbench.cli import main
from tempbench.study.grid_sweep import RUN_ATTR

SUITE = """
name = "tiny"
datasets = ["digits"]
strategies = ["fixed", "isogclr"]
seeds = 2
[run]
encoder = "small_cnn"
projector_hidden = 32
projector_out = 16
epochs = 1
batch_size = 256
device = "cpu"
progress = false
"""

# `python COMMAND run ...` is `tempbench run ...` with the quick probe; spawned workers re-import this file as their
# main module, so they get the same probe
COMMAND = """
import functools, importlib, sys
evaluate = importlib.import_module("tempbench.eval.evaluate")
evaluate.linear_probe = functools.partial(evaluate.linear_probe, max_iter=5)
if __name__ == "__main__":
    from tempbench.cli import main
    sys.exit(main(sys.argv[1:]))
"""

TIMING = ("time_data_s", "time_train_s", "time_eval_s", "finished_at")  # wall clock: differs between any two runs
TIMED_HISTORY = ("views_per_s",)


def start(tmp_path: Path, name: str, out: Path, *extra: str, suite: str = SUITE) -> subprocess.Popen:
    """`tempbench run` of the tiny suite into `out`, in its own process; stdout (JSON) and stderr to NAME.out/.err."""
    (tmp_path / "command.py").write_text(COMMAND)
    (tmp_path / "tiny.toml").write_text(suite)
    argv = [sys.executable, str(tmp_path / "command.py"), "run", "--suite", str(tmp_path / "tiny.toml"), "--out",
            str(out), "--no-tracking", "--no-figures", "--json", *extra]
    with open(tmp_path / f"{name}.out", "w") as stdout, open(tmp_path / f"{name}.err", "w") as stderr:
        return subprocess.Popen(argv, stdout=stdout, stderr=stderr, cwd=tmp_path)


def result(tmp_path: Path, name: str, command: subprocess.Popen) -> dict:
    """The command's JSON result, once it has ended well."""
    assert command.wait(timeout=300) == 0, (tmp_path / f"{name}.err").read_text()[-3000:]
    return json.loads((tmp_path / f"{name}.out").read_text())


def sweep(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="suite-tiny", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "optuna-journal.log"))))


def wait_for_a_finished_run(out: Path, command: subprocess.Popen) -> None:
    """Block until the first command's sweep has a COMPLETE trial: the second then joins a sweep in progress."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and command.poll() is None:
        try:
            if sweep(out).get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                return
        except (KeyError, FileNotFoundError):  # the study or its journal does not exist yet
            pass
        time.sleep(0.2)
    raise AssertionError("the first command finished no run")


def numbers(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows by run id, every column as written, without the wall-clock ones (also inside the epoch history)."""
    history = [json.dumps([{k: v for k, v in epoch.items() if k not in TIMED_HISTORY} for epoch in json.loads(h)])
               for h in rows["history"]]
    return rows.drop(columns=list(TIMING)).assign(history=history).set_index("run_id").sort_index()


@pytest.mark.parametrize("joins", ["at once", "in progress"])
def test_two_commands_on_one_folder_train_every_run_once(joins: str, tmp_path: Path) -> None:
    # one worker each (--devices cpu): the commands share the queue as their workers would, at a third of the
    # process start-ups (a worker imports torch and the harness: seconds of CPU each)
    out = tmp_path / "out"
    first = start(tmp_path, "first", out, "--devices", "cpu")
    if joins == "in progress":
        wait_for_a_finished_run(out, first)
    second = start(tmp_path, "second", out, "--devices", "cpu")
    results = [result(tmp_path, "first", first), result(tmp_path, "second", second)]

    rows = pd.read_csv(out / "runs.csv")
    trials = sweep(out).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(rows) == rows.run_id.nunique() == 4  # every run trained once: one row each
    assert sorted(t.user_attrs[RUN_ATTR] for t in trials) == sorted(rows.run_id)
    assert sum(r["trained"] for r in results) == 4 and all(r["skipped"] == 4 - r["trained"] for r in results)
    for r in results:  # each command prints the whole leaderboard, whoever trained its runs
        assert sorted((cell["strategy"], cell["seeds"]) for cell in r["leaderboard"]) == [("fixed", 2),
                                                                                         ("isogclr", 2)]


@pytest.mark.usefixtures("quick_probe")  # this process's runs probe as the command's workers do
def test_a_run_trains_the_same_row_with_one_worker_or_two(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    two = start(tmp_path, "two", tmp_path / "two", "--devices", "cpu,cpu")
    assert main(["run", "--suite", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "one"), "--devices", "cpu",
                 "--no-tracking", "--no-figures"]) == 0
    assert "in this process, 1 CPU thread per run" in capsys.readouterr().err
    assert result(tmp_path, "two", two)["trained"] == 4
    one, two = (numbers(pd.read_csv(tmp_path / name / "runs.csv", dtype=str)) for name in ("one", "two"))
    assert list(one.index) == list(two.index) and len(one) == 4
    # metrics registered in this process by earlier tests (metric plugins) are not in the spawned workers' rows
    assert set(two.columns) <= set(one.columns)
    differ = [c for c in two.columns if not one[c].equals(two[c])]
    assert not differ, differ  # every metric, τ, loss and per-epoch value, to the last bit (CSV keeps float repr)



@pytest.mark.slow  # two spawned workers train 3 epochs each: ~30 s idle
def test_a_killed_suite_worker_has_its_run_retried_and_the_command_ends_well(tmp_path: Path) -> None:
    """kill -9 of one of two workers mid-run: its run is failed and queued again at once, the survivor trains it,
    and the command ends 0 with every run once (before, a killed worker was an error at the end)."""
    import os
    import signal

    from tempbench.study.storage import WORKER_ATTR

    out = tmp_path / "out"
    command = start(tmp_path, "killed", out, "--devices", "cpu,cpu", suite=SUITE.replace("epochs = 1", "epochs = 3"))
    victim, deadline = None, time.monotonic() + 240
    while victim is None and time.monotonic() < deadline and command.poll() is None:
        try:
            running = sweep(out).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            victim = next((int(t.user_attrs[WORKER_ATTR].rsplit(":", 1)[1]) for t in running
                           if WORKER_ATTR in t.user_attrs and RUN_ATTR in t.user_attrs), None)
        except (KeyError, FileNotFoundError):
            pass
        time.sleep(0.2)
    assert victim is not None, (tmp_path / "killed.err").read_text()[-3000:]
    os.kill(victim, signal.SIGKILL)
    assert result(tmp_path, "killed", command)["skipped"] >= 0
    rows = pd.read_csv(out / "runs.csv")
    assert len(rows) == rows.run_id.nunique() == 4
    assert "was killed (SIGKILL)" in (tmp_path / "killed.err").read_text()
