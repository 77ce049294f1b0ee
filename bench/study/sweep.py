"""A sweep: train every resolved config of a suite that `runs.csv` does not hold yet, appending each row as it
finishes, so an interrupted sweep continues where it stopped. Nested under one MLflow parent run per sweep."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tempbench.config import RunConfig
from tempbench.eval import summary_line
from tempbench.leaderboard import keep_row, read_rows
from tempbench.tracking import Tracker
from tempbench.train import run_id, train


def finished_run_ids(runs_csv: Path) -> set[str]:
    """The run ids already in `runs_csv` (none when it does not exist yet)."""
    if not runs_csv.exists():
        return set()
    return {str(r) for r in read_rows(runs_csv).get("run_id", [])}


def run_sweep(configs: Sequence[RunConfig], out: Path, tracker: Tracker, parent: Any = None, *,
              rerun: bool = False, checkpoints: bool = False, progress: bool = True) -> dict[str, int]:
    """Train the configs not yet in out/runs.csv (all of them with `rerun`); returns {"trained", "skipped"}.

    Prints one line for the skipped runs and one per finished run; an overall bar shows the ETA. `checkpoints`:
    keep each run's last checkpoint under out/checkpoints (resume works from rows either way: a finished run is
    never trained again).
    """
    done = set() if rerun else finished_run_ids(out / "runs.csv")
    todo = [c for c in configs if run_id(c) not in done]
    if len(todo) < len(configs):
        print(f"{len(configs) - len(todo)} of {len(configs)} runs already in {out / 'runs.csv'}: skipped "
              f"(--rerun trains them again)", file=sys.stderr)
    bar = tqdm(total=len(todo), desc="runs", unit="run", disable=not progress or not todo, file=sys.stderr,
               bar_format="{desc} {n_fmt}/{total_fmt} |{bar:24}| {elapsed}<{remaining}")
    try:
        for config in todo:
            start = time.perf_counter()
            row = train(config, out_dir=out, tracker=tracker, tracker_parent=parent, checkpoints=checkpoints)
            keep_row(out / "runs.csv", row)
            bar.write(f"{run_id(config)}: {summary_line(row)}  ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
            bar.update(1)
    finally:
        bar.close()
    return {"trained": len(todo), "skipped": len(configs) - len(todo)}
