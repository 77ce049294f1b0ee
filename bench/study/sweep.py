"""A suite on a folder is a shared queue. Every `tempbench run` on DIR works through one Optuna grid study in DIR's
journal file (with --storage: one study there, for every machine), so commands started side by side split the runs
between their workers, none is trained twice, and each prints the whole leaderboard once the last run is done.

    storage = sweep_storage(None, out)                  # the journal file in out
    study = choose_study(storage, "suite-quick", configs, rerun=False)
    job = SweepJob(configs, storage, study.name, str(out), reuse_rows=study.reuse_rows)
    swept = sweep_folder(job, devices=[None, None])     # two worker processes -> Swept(trained, skipped, rows)

A command that joins a sweep in progress takes the runs no trial holds; once the rest are running elsewhere, its
workers wait for them (`Budget.wait_for_slot`: they finish, or are retried if their worker died), and it builds
the leaderboard from every finished run like the command that started the sweep.

Which study: `suite-NAME` (or --study); a study of its own when the suite's runs changed (`sweep_name`, which
reuses the rows runs.csv holds); and for `--rerun` the next generation, `NAME-rerunK`, a fresh sweep that trains
every run again. A command without --rerun joins the newest generation, so it helps a rerun in progress and, after
one, reports the rerun's rows (runs.csv keeps both; a leaderboard built from it takes a run's last row).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import optuna
import pandas as pd
from optuna.trial import TrialState

from tempbench.config import RunConfig
from tempbench.tracking import Tracker
from tempbench.train import run_id

from .grid_sweep import (
    COMMAND_ATTR,
    REUSED_ATTR,
    RUN_ATTR,
    SweepJob,
    finished_rows,
    run_grid_sweep,
    sweep_name,
    sweep_rows,
)
from .storage import open_storage, resolve_storage

RERUN = "-rerun"  # a --rerun's study: NAME-rerun1, NAME-rerun2, ...


class StudyChoice(NamedTuple):
    name: str  # the study a command works on
    reuse_rows: bool  # whether its runs may take the rows runs.csv holds (False: a --rerun's generation)
    changed: bool  # the suite's runs are not those of the study named `base`: it got a sweep of its own


class Swept(NamedTuple):
    trained: int  # runs this command's workers trained
    skipped: int  # the others: finished before, reused from runs.csv, or trained by a command beside this one
    rows: pd.DataFrame  # every run's row, from the study: what the leaderboard is built from


def sweep_storage(storage: str | None, out: Path) -> str:
    """`storage` (an RDB URL or journal:PATH), or the journal file in `out`: the Optuna storage that processes on
    this machine share safely (SQLite locks up under several writers)."""
    return resolve_storage(storage, out, workers=2)


def choose_study(storage: str, base: str, configs: Sequence[RunConfig], *, rerun: bool) -> StudyChoice:
    """The study a command works on: the newest generation of `base`'s sweep of these runs, or with `rerun` a new
    generation, which reuses no row."""
    name = sweep_name(storage, base, list(configs))
    generation = newest_generation(storage, name) + rerun
    return StudyChoice(f"{name}{RERUN}{generation}" if generation else name, generation == 0, name != base)


def newest_generation(storage: str, name: str) -> int:
    """k of the newest `NAME-rerunK` study in `storage`; 0 when the sweep was never rerun."""
    pattern = re.compile(re.escape(name + RERUN) + r"(\d+)")
    names = optuna.get_all_study_names(open_storage(storage, heartbeat=None))
    return max((int(m.group(1)) for n in names if (m := pattern.fullmatch(n))), default=0)


def sweep_folder(job: SweepJob, devices: Sequence[str | None], tracker: Tracker | None = None) -> Swept:
    """Work through the job's sweep with one worker per device (in this process for one, tracking through
    `tracker` when given), until every run is finished, by these workers or any others; then count what this
    command trained. One line first says how many runs were finished already."""
    done = finished_runs(job)
    if done:
        print(f"{len(done)} of {len(job.configs)} runs already in {job.out}: skipped (--rerun trains them again)",
              file=sys.stderr, flush=True)
    study = run_grid_sweep(job, list(devices), tracker)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    trained = sum(t.user_attrs.get(COMMAND_ATTR) == job.command and not t.user_attrs.get(REUSED_ATTR)
                  for t in complete)
    return Swept(trained, len(job.configs) - trained, sweep_rows(study))


def finished_runs(job: SweepJob) -> set[str]:
    """The job's runs finished before it starts: COMPLETE in its study, or (unless a rerun) rows in runs.csv."""
    try:
        study = optuna.load_study(study_name=job.study_name, storage=open_storage(job.storage, heartbeat=None))
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    except KeyError:  # a new sweep
        trials = []
    done = {t.user_attrs.get(RUN_ATTR) for t in trials}
    if job.reuse_rows:
        done |= finished_rows(Path(job.out) / "runs.csv").keys()
    return done & {run_id(c) for c in job.configs}


def run_sweep(configs: Sequence[RunConfig], out: Path, tracker: Tracker, parent: Any = None, *,
              rerun: bool = False, checkpoints: bool = False, progress: bool = True) -> dict[str, int]:
    """Train `configs` into `out` (runs.csv; checkpoints with `checkpoints`) in this process, through the study
    `sweep` in the folder's journal file, so any other process sweeping the same runs into `out` shares the work.
    Runs are tracked by `tracker`, nested under the `parent` run; `progress`: one line per finished run. Returns
    {"trained", "skipped"}."""
    out.mkdir(parents=True, exist_ok=True)
    storage = sweep_storage(None, out)
    study = choose_study(storage, "sweep", configs, rerun=rerun)
    job = SweepJob(list(configs), storage, study.name, str(out), parent_run_id=getattr(parent, "run_id", None),
                   checkpoints=checkpoints, reuse_rows=study.reuse_rows, progress=progress)
    swept = sweep_folder(job, [None], tracker)
    return {"trained": swept.trained, "skipped": swept.skipped}
