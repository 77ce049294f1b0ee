"""A new metric is one declaration: registered here, in this one file, it reaches the result row, the leaderboard
(`--metric`), the metric listing and the summary line with no other change — as the plugin test does for
strategies."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tempbench.cli import main
from tempbench.config import resolve_run_config
from tempbench.eval import Metric, get_metric, list_metrics, register_metric, summary_line
from tempbench.leaderboard import append_row
from tempbench.train import train

KNN5 = Metric("knn5_top1", "kNN-5 top-1", "weighted kNN, k=5, T=0.1; bank: the training split",
              compute=lambda ev: ev.accuracy(ev.knn(5, 0.1)), summary=True)
register_metric(KNN5)


def test_the_registry_knows_it() -> None:
    assert get_metric("knn5_top1") is KNN5 and KNN5 in list_metrics(split="test", pairing="views")
    with pytest.raises(ValueError, match="already registered"):
        register_metric(Metric("knn5_top1", "other", "other", compute=lambda ev: 0.0))


@pytest.mark.usefixtures("quick_probe")
def test_it_reaches_the_row_the_summary_line_and_the_leaderboard(tmp_path, capsys) -> None:
    config = resolve_run_config("fixed", "digits-lt", settings={
        "epochs": 1, "batch_size": 256, "projector_hidden": 32, "projector_out": 16, "device": "cpu",
        "progress": False})
    row = train(config)
    assert 0.0 <= row["knn5_top1"] <= 100.0
    assert "kNN-5 top-1" in summary_line(row)
    for seed in (0, 1):
        append_row(tmp_path / "runs.csv", {**row, "seed": seed})
    assert main(["leaderboard", str(tmp_path / "runs.csv"), "--metric", "knn5_top1", "--json", "--no-figures"]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert cells[0]["knn5_top1_mean"] == pytest.approx(row["knn5_top1"])
    assert "kNN-5 top-1" in (tmp_path / "leaderboard.md").read_text()
    assert main(["metrics", "--json"]) == 0
    assert "knn5_top1" in {m["name"] for m in json.loads(capsys.readouterr().out)}
    assert pd.read_csv(tmp_path / "leaderboard.csv")["knn5_top1_n"].iloc[0] == 2
