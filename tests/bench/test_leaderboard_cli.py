"""`tempbench leaderboard RUNS.csv [--out DIR]` end to end."""

from __future__ import annotations

from tempbench.cli import main
from tempbench.results import append_row


def write_runs(path):
    for strategy, seed, acc in [("fixed", 0, 80.0), ("fixed", 1, 81.0), ("isogclr", 1, 83.5), ("isogclr", 0, 82.0)]:
        append_row(path, {"strategy": strategy, "dataset": "digits", "seed": seed, "knn200_top1": acc - 3,
                          "linear_top1": acc, "linear_few": acc - 20, "linear_tail": acc - 10, "epochs": 1})


def test_prints_markdown_and_writes_outputs(tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    write_runs(runs)
    assert main(["leaderboard", str(runs), "--out", str(tmp_path / "board")]) == 0
    printed = capsys.readouterr().out
    assert "## digits" in printed and "| isogclr | 2 |" in printed
    assert printed.strip() == (tmp_path / "board" / "leaderboard.md").read_text().strip()
    assert (tmp_path / "board" / "accuracy.png").is_file()


def test_defaults_to_the_runs_folder(tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    write_runs(runs)
    assert main(["leaderboard", str(runs)]) == 0
    assert (tmp_path / "leaderboard.csv").is_file()


def test_missing_file_is_a_one_line_error(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path / "absent.csv")]) == 2
    err = capsys.readouterr().err
    assert "tempbench leaderboard: error: no results file at" in err


def test_missing_columns_are_a_one_line_error(tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    append_row(runs, {"strategy": "fixed", "dataset": "digits", "seed": 0})
    assert main(["leaderboard", str(runs)]) == 2
    assert "lack column(s) ['knn200_top1', 'linear_top1', 'linear_few', 'linear_tail']" in capsys.readouterr().err
