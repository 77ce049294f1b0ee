"""Nothing trained is lost: a finished run's row that no file can take (a full disk, simulated by a writer that raises
OSError(ENOSPC)) is printed as JSON on stdout with one line saying what could not be written where; a checkpoint that
cannot be saved is a warning and the run goes on; a finished `--resume` appends no second row; a killed atomic write
leaves no `.tmp` behind for long; a corrupt history cell is one warning naming its run. Training itself is replaced
by a stub returning a row (the subject is what happens to the row, not how it was computed)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import tempbench.cli.run
import tempbench.cli.train
import tempbench.leaderboard.rows as rows_module
import tempbench.study.grid_sweep
import tempbench.train.checkpoint as checkpoint_module
from tempbench.cli import main
from tempbench.config import resolve_run_config
from tempbench.leaderboard import append_row, read_rows
from tempbench.leaderboard.rows import CorruptCellWarning
from tempbench.train import run_id
from tempbench.train.checkpoint import save_checkpoint, save_setup
from tempbench.util import ArtifactWarning, write_atomic

TRAIN = ["train", "--strategy", "fixed", "--dataset", "digits", "--epochs", "1", "--no-tracking"]
SUITE = 'name = "tiny"\ndatasets = ["digits"]\nstrategies = ["fixed", "sogclr"]\nseeds = 1\n[run]\nepochs = 1\n'
FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fake_row(config: Any, **kwargs: Any) -> dict[str, Any]:
    """What `train` returns, in miniature."""
    return {"run_id": run_id(config), "strategy": config.strategy, "dataset": config.dataset, "seed": config.seed,
            "linear_top1": 81.25, "history": [{"loss": 1.5}]}


def disk_full_after(monkeypatch: pytest.MonkeyPatch, writes: int) -> None:
    """Let the first `writes` atomic writes of result rows through, then fail every one like a full disk."""
    done = []

    def write(path: Any, *args: Any, **kwargs: Any) -> Path:
        if len(done) >= writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        done.append(path)
        return write_atomic(path, *args, **kwargs)

    monkeypatch.setattr(rows_module, "write_atomic", write)


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_a_row_no_file_can_take_is_printed_with_one_line_saying_where(as_json: bool, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tempbench.cli.train, "train", fake_row)
    disk_full_after(monkeypatch, 0)
    assert main([*TRAIN, "--out", str(tmp_path), *(["--json"] if as_json else [])]) == 2
    out, err = capsys.readouterr()
    row = json.loads(out)  # stdout is the row, as JSON, with or without --json
    assert row["linear_top1"] == 81.25 and row["run_id"].startswith("fixed-digits-s0-")
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err == (f"tempbench train: error: could not write the row of run {row['run_id']} to {tmp_path}/runs.csv "
                   f"nor beside it to {tmp_path}/runs.csv.{row['run_id']}.json ({os.strerror(errno.ENOSPC)}); the "
                   f"row is printed on stdout as JSON\n")
    assert not list(tmp_path.iterdir())  # no half-written file either


def test_a_row_the_csv_cannot_take_is_kept_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tempbench.cli.train, "train", fake_row)
    append_row(tmp_path / "runs.csv", {"run_id": "earlier", "linear_top1": 70.0})
    before = (tmp_path / "runs.csv").read_bytes()
    monkeypatch.setattr(rows_module, "append_row", lambda *a: (_ for _ in ()).throw(FULL))
    with pytest.warns(ArtifactWarning, match=r"could not append the row to .*runs.csv \(OSError: .*No space left"):
        assert main([*TRAIN, "--out", str(tmp_path), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / f"runs.csv.{row['run_id']}.json").read_text())["linear_top1"] == 81.25
    assert (tmp_path / "runs.csv").read_bytes() == before  # untouched


def test_a_full_disk_during_a_suite_keeps_earlier_rows_and_prints_the_lost_one(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch,
                                                                               capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(tempbench.study.grid_sweep, "train", fake_row)
    disk_full_after(monkeypatch, 1)  # the first run's row goes in; the disk is full from the second on
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    # one worker, in this process (--devices cpu), so the stub and the full disk apply to it
    monkeypatch.setattr(tempbench.cli.run, "build_leaderboard", lambda rows, *a, **k: leaderboard_of(rows))
    assert main(["run", "--suite", str(suite), "--out", str(out), "--devices", "cpu", "--no-tracking",
                 "--no-figures", "--json"]) == 0  # the suite goes on: its other runs, its leaderboard
    printed, err = capsys.readouterr()
    kept = pd.read_csv(out / "runs.csv")
    first, rest = printed.split("\n", 1)  # the lost row on one line, then the command's --json result
    lost, result = json.loads(first), json.loads(rest)
    assert sorted([*kept["strategy"], lost["strategy"]]) == ["fixed", "sogclr"] and len(kept) == 1
    assert [cell["strategy"] for cell in result["leaderboard"]] == ["fixed", "sogclr"]  # the lost row is in it
    warnings_ = [line for line in err.splitlines() if "could not write" in line]
    assert len(warnings_) == 1 and "Traceback" not in err, err
    assert warnings_[0].startswith(f"tempbench run: warning: could not write the row of run {lost['run_id']} to ")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def leaderboard_of(rows: pd.DataFrame) -> types.SimpleNamespace:
    """A stand-in for build_leaderboard on the stub's rows: one cell per strategy."""
    summary = pd.DataFrame({"strategy": sorted(rows["strategy"])})
    return types.SimpleNamespace(summary=summary, files=[], terminal="")


def tiny_setup() -> types.SimpleNamespace:
    """What `save_setup` reads of a Setup, in miniature."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return types.SimpleNamespace(model=model, optimizer=optimizer, strategy=torch.nn.Module(),
                                 scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                                 config=types.SimpleNamespace(to_dict=lambda: {"strategy": "fixed"}))


def test_a_checkpoint_that_cannot_be_saved_is_a_warning_and_the_run_goes_on(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path: Any, *args: Any, **kwargs: Any) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoint_module, "write_atomic", full)
    path = tmp_path / "checkpoints" / "run.pt"
    with pytest.warns(ArtifactWarning, match=rf"could not save the checkpoint {path} \(No space left on device\); "
                                             r"the run goes on without it"):
        assert save_setup(path, tiny_setup(), {"epoch": 1}) is None
    assert not path.exists()


def finished_run(out: Path) -> tuple[Path, dict[str, Any]]:
    """A checkpoint at the last epoch of `TRAIN`'s run, and its row in out/runs.csv."""
    config = resolve_run_config("fixed", "digits", settings={"epochs": 1, "seed": 0})
    ckpt = save_checkpoint(out / "checkpoints" / f"{run_id(config)}.pt", model={}, optimizer={}, scheduler={},
                           strategy={}, progress={"epoch": 1, "step": 8, "history": [], "visits": None},
                           config=config.to_dict())
    row = fake_row(config)
    append_row(out / "runs.csv", row)
    return ckpt, row


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_resuming_a_finished_run_appends_no_second_row(as_json: bool, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, row = finished_run(tmp_path)
    monkeypatch.setattr(tempbench.cli.train, "train", lambda *a, **k: pytest.fail("a finished run trained again"))
    argv = [*TRAIN, "--out", str(tmp_path), "--resume", str(ckpt), *(["--json"] if as_json else [])]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert len(read_rows(tmp_path / "runs.csv")) == 1
    assert f"run {row['run_id']} is already finished" in err and "Traceback" not in err
    if as_json:
        printed = json.loads(out)
        assert printed["run_id"] == row["run_id"] and printed["linear_top1"] == 81.25
    else:
        assert row["run_id"] not in out and "81.250" in out  # the row as `tempbench train` prints it


def test_a_finished_checkpoint_whose_row_was_lost_is_evaluated_and_appended(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, _ = finished_run(tmp_path)
    (tmp_path / "runs.csv").unlink()  # e.g. the disk was full when it finished
    monkeypatch.setattr(tempbench.cli.train, "train", fake_row)
    assert main([*TRAIN, "--out", str(tmp_path), "--resume", str(ckpt), "--json"]) == 0
    assert len(read_rows(tmp_path / "runs.csv")) == 1


def test_the_tmp_file_of_a_killed_write_is_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "runs.csv"
    writer = subprocess.Popen(  # writes half a file, then hangs until killed
        [sys.executable, "-c", "import sys, time\nfrom tempbench.util import write_atomic\n"
         "write_atomic(sys.argv[1], lambda fh: (fh.write('half'), fh.flush(), print('w', flush=True), "
         "time.sleep(60)))", str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "w\n"
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert len(list(tmp_path.glob(".runs.csv.*.tmp"))) == 1  # what SIGKILL leaves
    foreign = tmp_path / ".runs.csv.another-host-1.abcd1234.tmp"  # another machine's write in progress: not ours
    foreign.write_text("theirs")
    append_row(target, {"run_id": "a"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [foreign.name, "runs.csv"]


def test_an_old_tmp_file_from_before_the_naming_rule_is_removed_and_a_fresh_one_kept(tmp_path: Path) -> None:
    old, fresh = tmp_path / ".runs.csv.k2j4h5g6.tmp", tmp_path / ".runs.csv.a1b2c3d4.tmp"
    for path in (old, fresh):
        path.write_text("half")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    append_row(tmp_path / "runs.csv", {"run_id": "a"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name, "runs.csv"]


def test_a_corrupt_history_cell_is_one_warning_naming_the_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text('run_id,linear_top1,history\ngood,80.0,"[{""loss"": 1.0}]"\nbad,81.0,"[{""loss"": 1."\n')
    with pytest.warns(CorruptCellWarning) as caught:
        rows = read_rows(path)
    assert [str(w.message) for w in caught] == [
        f"run bad: its history cell ({path}, line 3) is not valid JSON (Expecting ',' delimiter: line 1 column 12 "
        f"(char 11)); its per-epoch curves are left out"]
    assert rows["run_id"].tolist() == ["good", "bad"]


def test_tau_artifacts_that_cannot_be_written_are_a_warning_and_the_row_is_kept(tmp_path, quick_probe):
    """A per-sample-τ run writes its τ report under out/tau/RUN after training: a disk that refuses it (here `tau`
    is a file, so the folder cannot be made) costs the report, not the row."""
    from tempbench.train import train

    (tmp_path / "tau").write_text("not a folder")
    config = resolve_run_config("isogclr", "digits", settings={"epochs": 1, "batch_size": 128, "device": "cpu",
                                                               "projector_hidden": 16, "projector_out": 8,
                                                               "progress": False, "threads": 1})
    with pytest.warns(ArtifactWarning, match="could not be written"):
        row = train(config, out_dir=tmp_path)
    assert row["run_id"] == run_id(config) and row["knn200_top1"] == row["knn200_top1"]
