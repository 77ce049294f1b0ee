"""A local worker killed mid-study (issue 20): the parent reaps workers as they end, in any order, and reports a
killed one in one line; its trial is failed and retried at once at the same design point, by the workers left; the
study ends with exactly its budget of complete trials on Sobol points 0..n-1, and the command exits 0 with its
report. Before: a killed second or third worker was a zombie that passed for alive, so the others waited forever;
a killed first worker ended the command with "a bug" and no report."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from scipy.stats import qmc

from tempbench.study.samplers import POINT_ATTR
from tempbench.study.sensitivity import WORKER_ATTR, counts, load, make_job, open_study, run_study
from tempbench.study.storage import alive, open_storage, resolve_storage
from tempbench.study.workers import Budget, WorkersLost, run_in_processes

from .procs import paced, sleep_then_exit

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[3]
HANG_S = 90  # a study of 6 one-second trials takes ~10 s here; past this the survivors are waiting forever


@pytest.fixture
def spawnable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawned workers unpickle `procs` functions by name: the repository root must be on their sys.path."""
    monkeypatch.syspath_prepend(str(ROOT))


def sobol_taus(n: int) -> list[float]:
    """fixed's τ (log-uniform on [0.01, 1]) at Sobol points 0..n-1 (n ≤ 8) of the study's design (seed 0)."""
    low, high = math.log(0.01), math.log(1.0)
    return [math.exp(low + p * (high - low)) for p in qmc.Sobol(1, scramble=True, seed=0).random(8)[:n, 0]]


def test_a_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child never ended"
        time.sleep(0.05)
    try:
        assert not alive(child.pid)  # signal 0 still succeeds: only its parent (this test) can reap it
        assert alive(os.getpid())
    finally:
        child.wait()


def test_workers_are_reaped_as_they_end_and_a_killed_one_is_reported_at_once(spawnable, tmp_path, capsys):
    seen = []
    done = [str(tmp_path / f"done{i}") for i in range(3)]
    jobs = [(6.0, False, done[0]), (0.2, True, done[1]), (6.0, False, done[2])]
    killed = run_in_processes(sleep_then_exit, jobs, on_death=lambda pid: seen.append(
        (pid, [Path(d).exists() for d in done])) or "its trial 7 of s is retried")
    assert killed == [1] and seen and seen[0][1] == [False] * 3  # reported before the first worker ended
    assert f"worker 2 (pid {seen[0][0]}) was killed (SIGKILL); its trial 7 of s is retried" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match=r"\(1, -9\)"):  # without on_death a killed worker stays an error
        run_in_processes(sleep_then_exit, [(0.1, False, done[0]), (0.1, True, done[1])])


@contextmanager
def killing(storage: str, study_name: str, position: int):
    """Kill -9 local worker `position` (1 = the first started) of the running study once it runs a trial; yield
    {"pid", "trial", "hung"}. A watchdog kills every worker after HANG_S: a hang fails the test, not CI."""
    found, done = {"pid": None, "trial": None, "hung": False}, threading.Event()

    def kill() -> None:
        workers = []
        while not done.is_set() and len(workers) < 3:
            time.sleep(0.1)  # started in order: multiprocessing numbers its processes as it starts them
            workers = sorted(multiprocessing.active_children(), key=lambda p: p._identity)
        victim = workers[position - 1].pid if workers else None
        while not done.is_set() and not found["pid"]:
            time.sleep(0.1)
            running = _running_by_pid(storage, study_name)
            if victim in running:
                os.kill(victim, signal.SIGKILL)
                found.update(pid=victim, trial=running[victim])
        if not done.wait(HANG_S):
            found["hung"] = True
            for process in workers:  # by pid: no reaping from here, which would hide the bug
                os.kill(process.pid, signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        done.set()
        thread.join(timeout=HANG_S + 30)


def _running_by_pid(storage: str, study_name: str) -> dict[int, int]:
    """{worker pid: trial number} of the trials running now and mid-way (they reported an epoch); {} before the
    study exists."""
    try:
        trials = optuna.load_study(study_name=study_name, storage=open_storage(storage)).get_trials(
            deepcopy=False, states=(TrialState.RUNNING,))
    except KeyError:
        return {}
    return {int(t.user_attrs[WORKER_ATTR].rpartition(":")[2]): t.number for t in trials
            if WORKER_ATTR in t.user_attrs and t.intermediate_values}


# 2: the survivors hung on a zombie; 1: "a bug" once it was done (with -m servers, as the command's test below)
@pytest.mark.parametrize("position", [2, pytest.param(1, marks=pytest.mark.servers)])
def test_a_killed_worker_s_trial_is_retried_at_its_point_and_the_study_ends(tmp_path, spawnable, capsys, position):
    storage = resolve_storage(None, tmp_path, workers=3)
    with killing(storage, "fixed-custom", position) as killed:
        study = run_study("fixed", paced, n_trials=6, grid=False, storage=None, study_name=None, out_dir=tmp_path,
                          workers=3)
    assert_budget_exact_and_retried(study, killed)
    assert f"worker {position} (pid {killed['pid']}) was killed (SIGKILL); its trial {killed['trial']} of " \
           "fixed-custom is retried" in capsys.readouterr().err


def assert_budget_exact_and_retried(study, killed: dict) -> None:
    """6 complete trials on Sobol points 0..5; the killed worker's trial failed and retried with its params."""
    assert not killed["hung"] and killed["pid"], killed
    found = counts(study)
    assert (found["complete"], found["running"], found["retried"]) == (6, 0, 1), found
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.user_attrs[POINT_ATTR] for t in complete) == list(range(6))  # every design point, once
    assert sorted(t.params["tau"] for t in complete) == pytest.approx(sorted(sobol_taus(6)))
    lost = study.trials[killed["trial"]]
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == lost.number]
    assert lost.state == TrialState.FAIL and [t.params for t in retry] == [lost.params]


def test_a_new_trial_takes_the_point_of_a_dead_worker_s_trial_before_its_retry_is_queued(tmp_path):
    """The PostgreSQL race: one survivor fails the stale trial, another creates a new trial before the first has
    queued the retry. The new trial must take the dead point (not point n), and the late retry is then surplus."""
    job = make_job("fixed", lambda s, p, r: p["strategy"]["tau"], n_trials=4, grid=False,
                   storage=f"journal:{tmp_path / 'journal.log'}", study_name="s", out_dir=tmp_path)
    open_study(job)
    study = load(job, worker=0)
    taus = sobol_taus(5)
    for _ in range(3):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("tau", 0.01, 1.0, log=True))
    dead = study.ask()
    dead.suggest_float("tau", 0.01, 1.0, log=True)  # point 3; then its worker is killed and it is failed
    study._storage.set_trial_state_values(dead._trial_id, TrialState.FAIL)
    new = study.ask()
    assert new.suggest_float("tau", 0.01, 1.0, log=True) == pytest.approx(taus[3])
    assert study.trials[new.number].user_attrs[POINT_ATTR] == 3
    study.enqueue_trial({"tau": taus[3]}, user_attrs={POINT_ATTR: 3})  # the retry, queued late
    late = study.ask()
    assert "design point 3 is taken" in Budget(9).surplus_reason(late)


def test_every_worker_killed_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    from tempbench.cli import main, sensitivity

    def lost(args):
        raise WorkersLost("study s: every worker ended, 3 of them killed, with 2 of 6 trials done; run the same "
                          "command again to resume it")

    monkeypatch.setattr(sensitivity, "main", lost)
    code = main(["sensitivity", "--strategy", "fixed", "--dataset", "digits", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "3 of them killed" in err and "bug" not in err


@pytest.mark.servers
@pytest.mark.parametrize("position", [1, 2, 3])
def test_kill_9_of_any_worker_of_the_command_ends_0_with_the_full_report(start_worker, tmp_path, position):
    """The issue's command, training faked: `tempbench sensitivity --workers 3`, one worker killed mid-trial."""
    out = tmp_path / "out"
    command = start_worker("main", "sensitivity", "--strategy", "fixed", "--dataset", "digits", "--trials", "6",
                           "--epochs", "2", "--workers", "3", "--no-tracking", "--out", str(out), seconds=1.5)
    storage = resolve_storage(None, out, workers=3)
    victim = _workers_of(command.pid)[position - 1]
    deadline = time.monotonic() + HANG_S
    while victim not in _running_by_pid(storage, "fixed-digits"):
        assert time.monotonic() < deadline, "the worker never ran a trial"
        time.sleep(0.1)
    os.kill(victim, signal.SIGKILL)
    code = command.wait(timeout=HANG_S)
    err = (tmp_path / "main.err").read_text()
    assert code == 0 and f"worker {position} (pid {victim}) was killed (SIGKILL); its trial" in err, err[-3000:]
    assert "bug" not in err
    study = optuna.load_study(study_name="fixed-digits", storage=open_storage(storage))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.user_attrs[POINT_ATTR] for t in complete) == list(range(6))
    assert "6 complete" in (out / "sensitivity.md").read_text()


def _workers_of(parent: int, timeout: float = HANG_S) -> list[int]:
    """The pids of the 3 worker processes `parent` spawned, in start order (its other child is multiprocessing's
    resource tracker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = sorted(pid for pid in _children(parent) if b"spawn_main" in _cmdline(pid))
        if len(workers) == 3:
            return workers
        time.sleep(0.1)
    raise AssertionError("the command never started its 3 workers")


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) == parent:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):  # it ended meanwhile
            pass
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.servers
def test_on_postgresql_a_killed_worker_s_retry_keeps_its_design_point(postgres, tmp_path, spawnable):
    url = postgres.database("killed_keeps_point")
    storage = resolve_storage(url, tmp_path)
    with killing(storage, "fixed-custom", 2) as killed:
        study = run_study("fixed", paced, n_trials=6, grid=False, storage=url, study_name=None, out_dir=tmp_path,
                          workers=3, heartbeat=1)
    assert_budget_exact_and_retried(study, killed)
