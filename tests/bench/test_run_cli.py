"""`tempbench train` and `tempbench run` through the CLI: a tiny suite end to end, resumable sweeps, bad input."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from tempbench.cli import main
from tempbench.config import list_suites, load_suite

TINY_SETTINGS = ["--set", "projector_hidden=32", "--set", "projector_out=16", "--set", "batch_size=64",
                 "--set", "progress=false", "--device", "cpu"]

SUITE = """
name = "tiny"
datasets = ["digits-lt"]
strategies = ["fixed", "isogclr"]
seeds = 2
[run]
encoder = "small_cnn"
projector_hidden = 32
projector_out = 16
epochs = 1
batch_size = 64
device = "cpu"
progress = false
[strategy_params.isogclr]
rho = 0.3
"""


def test_train_prints_and_appends_its_row(tmp_path, capsys) -> None:
    code = main(["train", "--strategy", "sogclr", "--dataset", "digits", "--epochs", "1", "--set", "gamma=0.5",
                 "--out", str(tmp_path), "--no-tracking", "--json", *TINY_SETTINGS])
    assert code == 0
    row = json.loads(capsys.readouterr().out)
    assert row["strategy"] == "sogclr" and json.loads(row["hparams"])["gamma"] == 0.5
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_run_a_suite_prints_the_leaderboard_and_resumes(tmp_path, capsys) -> None:
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--no-tracking"]) == 0
    printed = capsys.readouterr()
    assert "## digits-lt" in printed.out and "| isogclr | 2 |" in printed.out
    rows = pd.read_csv(out / "runs.csv")
    assert sorted(zip(rows.strategy, rows.seed)) == [("fixed", 0), ("fixed", 1), ("isogclr", 0), ("isogclr", 1)]
    assert all(json.loads(h)["rho"] == 0.3 for h in rows[rows.strategy == "isogclr"].hparams)
    assert (out / "leaderboard.md").exists() and (out / "leaderboard.csv").exists()
    # a second invocation trains nothing new: every run is already in runs.csv
    assert main(["run", "--suite", str(suite), "--out", str(out), "--no-tracking"]) == 0
    assert printed.err.count("kNN") == 4 and "already in runs.csv" in capsys.readouterr().err
    assert len(pd.read_csv(out / "runs.csv")) == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--strategy", "simclr", "--dataset", "digits"], "unknown strategy 'simclr'; registered strategies"),
        (["train", "--strategy", "fixed", "--dataset", "nope"], "nope"),
        (["train", "--strategy", "fixed", "--dataset", "digits", "--set", "rho=0.1"],
         r"unknown hyperparameter\(s\) \['rho'\] for strategy 'fixed'"),
        (["train", "--strategy", "fixed", "--dataset", "digits", "--set", "epochs"], "--set expects key=value"),
        (["train", "--strategy", "fixed", "--dataset", "digits", "--set", "encoder=vit"], "vit"),
        (["train", "--strategy", "fixed", "--dataset", "digits", "--device", "tpu"], "unknown device 'tpu'"),
        (["train", "--strategy", "fixed", "--dataset", "digits", "--long-tail", "2"], "long_tail"),
        (["run", "--suite", "nope"], "unknown suite 'nope'; shipped suites: "),
        (["run", "--set", "tau=0.1"], "run settings only"),
    ],
)
def test_bad_input_is_one_clear_error(argv, message, tmp_path, capsys) -> None:
    code = main([*argv, "--out", str(tmp_path), "--no-tracking"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tempbench {argv[0]}: error:")
    assert re.search(message, err), err


def test_shipped_suites_load_and_validate() -> None:
    assert {"quick", "cifar10-lt-cpu", "paper-cifar10-lt", "paper-cifar100-lt"} <= set(list_suites())
    for name in list_suites():
        suite = load_suite(name)
        assert suite.configs(seeds=1)
    quick = load_suite("quick")
    assert quick.datasets == ["digits", "digits-lt"] and quick.run["device"] == "cpu"


def test_unknown_suite_key_is_an_error(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('datasets = ["digits"]\nepochs = 3\n')
    with pytest.raises(ValueError, match=r"unknown suite key\(s\) \['epochs'\]"):
        load_suite(str(path))
