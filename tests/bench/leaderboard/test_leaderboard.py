"""Result rows and leaderboard maths against hand computations and scipy."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tempbench.leaderboard import (
    append_row,
    build_leaderboard,
    check_rows,
    holm,
    keep_row,
    mean_ci,
    paired_test,
    read_rows,
    summarize_rows,
)

METRICS = ["knn200_top1", "linear_top1"]


def make_row(strategy, seed, linear, dataset="cifar10-lt", config=None, **extra):
    config = config or {"strategy": strategy, "epochs": 5, "hyperparameters": {}}
    return {"strategy": strategy, "dataset": dataset, "seed": seed, "config": json.dumps(config),
            "config_hash": f"{strategy}-{config['epochs']}-{json.dumps(config['hyperparameters'])}",
            "knn200_top1": linear - 5.0, "linear_top1": linear, "linear_few": linear - 30.0,
            "linear_tail": linear - 20.0, "lt_hash": "abc", **extra}


def test_append_keeps_old_rows_and_unions_columns(tmp_path):
    path = tmp_path / "runs.csv"
    append_row(path, {"strategy": "fixed", "seed": 0, "linear_top1": 81.25})
    append_row(path, {"strategy": "sogclr", "seed": 1, "tau_by_class": [0.1, 0.2], "note": None})
    rows = read_rows(path)
    assert rows.columns.tolist() == ["strategy", "seed", "linear_top1", "tau_by_class", "note"]
    assert rows["strategy"].tolist() == ["fixed", "sogclr"]
    assert rows["linear_top1"].iloc[0] == 81.25 and np.isnan(rows["linear_top1"].iloc[1])
    assert json.loads(rows["tau_by_class"].iloc[1]) == [0.1, 0.2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv"]  # the temporary file was renamed away


def test_append_writes_floats_that_round_trip(tmp_path):
    path = tmp_path / "runs.csv"
    append_row(path, {"x": 0.1 + 0.2, "y": float("nan")})
    assert read_rows(path)["x"].iloc[0] == 0.1 + 0.2


def test_a_long_run_history_cell_appends(tmp_path):
    """A 200-epoch run's history passes the csv module's default cell limit (131,072 characters)."""
    path = tmp_path / "runs.csv"
    history = [{"epoch": e, "step_losses": [0.123456789] * 40} for e in range(200)]
    append_row(path, {"run_id": "a", "history": history})
    append_row(path, {"run_id": "b", "history": history})  # re-reads the long cell
    assert len(json.loads(read_rows(path)["history"].iloc[1])) == 200


def test_keep_row_saves_a_row_it_cannot_append(tmp_path):
    path = tmp_path / "runs.csv"
    path.mkdir()  # not a file: the append fails
    with pytest.warns(UserWarning, match="kept in"):
        kept = keep_row(path, {"run_id": "fixed-s0", "linear_top1": 81.25, "tau": float("nan")})
    assert kept.name == "runs.csv.fixed-s0.json"
    assert json.loads(kept.read_text()) == {"run_id": "fixed-s0", "linear_top1": 81.25, "tau": None}


def test_read_rows_reports_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results file"):
        read_rows(tmp_path / "nope.csv")


def test_mean_ci_by_hand():
    mean, half, n = mean_ci([80.0, 82.0, 84.0])
    # sd = 2, t_{0.975, 2} = 4.302652729911275
    assert (mean, n) == (82.0, 3)
    assert half == pytest.approx(4.302652729911275 * 2.0 / math.sqrt(3))
    mean, half, n = mean_ci([80.0, float("nan")])
    assert (mean, n) == (80.0, 1) and math.isnan(half)


def test_paired_test_pairs_by_seed_not_by_order():
    treatment = pd.Series([85.0, 83.0, 90.0, 84.5], index=[2, 0, 7, 1])  # seed 7 has no baseline
    baseline = pd.Series([80.0, 81.0, 82.5], index=[0, 1, 2])
    out = paired_test(treatment, baseline)
    expected = stats.ttest_rel([83.0, 84.5, 85.0], [80.0, 81.0, 82.5])
    diffs = np.array([3.0, 3.5, 2.5])
    assert out["pairs"] == 3
    assert out["diff"] == pytest.approx(diffs.mean())
    assert out["p"] == pytest.approx(expected.pvalue)
    assert out["diff_ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3))


def test_paired_test_is_blank_below_two_pairs_and_without_variance():
    one = paired_test(pd.Series([85.0, 86.0], index=[0, 5]), pd.Series([80.0], index=[0]))
    assert one["pairs"] == 1 and math.isnan(one["diff"]) and math.isnan(one["p"])
    same = paired_test(pd.Series([81.0, 82.0]), pd.Series([80.0, 81.0]))
    assert same["diff"] == pytest.approx(1.0) and math.isnan(same["p"])


def leaderboard_rows():
    rows = [make_row("fixed", s, v) for s, v in [(0, 80.0), (1, 81.0), (2, 82.5)]]
    rows += [make_row("isogclr", s, v, tau_spearman=0.2 * s) for s, v in [(2, 85.0), (0, 83.0), (1, 84.5), (7, 90.0)]]
    rows += [make_row("sogclr", 0, 79.0)]
    return pd.DataFrame(rows)


def test_summary_against_hand_computation():
    summary = summarize_rows(leaderboard_rows(), METRICS).set_index("strategy")
    iso = summary.loc["isogclr"]
    assert iso["seeds"] == 4
    assert iso["linear_top1_mean"] == pytest.approx(np.mean([85.0, 83.0, 84.5, 90.0]))
    assert iso["linear_top1_ci95"] == pytest.approx(
        stats.t.ppf(0.975, 3) * np.std([85.0, 83.0, 84.5, 90.0], ddof=1) / 2.0)
    assert iso["linear_top1_pairs"] == 3
    assert iso["linear_top1_p"] == pytest.approx(stats.ttest_rel([83.0, 84.5, 85.0], [80.0, 81.0, 82.5]).pvalue)
    assert iso["tau_spearman_mean"] == pytest.approx(np.mean([0.4, 0.0, 0.2, 1.4]))
    assert math.isnan(summary.loc["fixed", "linear_top1_p"])  # the baseline is not tested against itself
    assert math.isnan(summary.loc["sogclr", "linear_top1_ci95"])  # one seed: no interval
    assert summary.loc["sogclr", "linear_top1_pairs"] == 1 and math.isnan(summary.loc["sogclr", "linear_top1_p"])


def test_repeated_seed_keeps_the_last_row():
    rows = pd.DataFrame([make_row("fixed", 0, 70.0), make_row("fixed", 0, 80.0)])
    assert check_rows(rows, METRICS)["linear_top1"].tolist() == [80.0]


def test_missing_columns_and_bad_seeds_raise():
    with pytest.raises(ValueError, match=r"lack column\(s\) \['linear_top1'\]"):
        check_rows(leaderboard_rows().drop(columns="linear_top1"), METRICS)
    with pytest.raises(ValueError, match=r"lack column\(s\) \['config_hash'\]"):
        check_rows(leaderboard_rows().drop(columns="config_hash"), METRICS)
    bad = leaderboard_rows()
    bad["seed"] = bad["seed"].astype(float)
    bad.loc[0, "seed"] = 0.5
    with pytest.raises(ValueError, match="'seed' must hold an integer"):
        check_rows(bad, METRICS)


def test_cells_are_keyed_by_configuration_never_averaged_across_them():
    """A 50-epoch rerun of fixed seed 0 next to 5-epoch seeds: two cells, labelled by what differs, no bogus Δ."""
    rows = [make_row("fixed", s, v) for s, v in [(0, 80.0), (1, 81.0), (2, 82.5)]]
    rows += [make_row("fixed", 0, 95.0, config={"strategy": "fixed", "epochs": 50, "hyperparameters": {}})]
    rows += [make_row("isogclr", s, v) for s, v in [(0, 83.0), (1, 84.5), (2, 85.0)]]
    summary = summarize_rows(pd.DataFrame(rows), METRICS).set_index("label")
    assert set(summary.index) == {"fixed (epochs=5)", "fixed (epochs=50)", "isogclr"}
    assert summary.loc["fixed (epochs=5)", "linear_top1_mean"] == pytest.approx(81.166666, rel=1e-6)
    assert summary.loc["fixed (epochs=50)", "seeds"] == 1
    # isogclr (5 epochs) is paired with the 5-epoch fixed cell only
    assert summary.loc["isogclr", "baseline"] == "fixed (epochs=5)"
    assert summary.loc["isogclr", "linear_top1_diff"] == pytest.approx(np.mean([3.0, 3.5, 2.5]))


def test_pairs_need_the_same_seed_and_the_same_subset():
    rows = [make_row("fixed", s, 80.0 + s) for s in (0, 1, 2)]
    rows += [make_row("isogclr", s, 82.0 + s, lt_hash="other" if s == 2 else "abc") for s in (0, 1, 2)]
    summary = summarize_rows(pd.DataFrame(rows), METRICS).set_index("label")
    assert summary.loc["isogclr", "linear_top1_pairs"] == 2


def test_holm_against_hand_computation_and_in_the_summary():
    assert holm([0.01, 0.04, float("nan"), 0.03]) == pytest.approx([0.03, 0.06, float("nan"), 0.06], nan_ok=True)
    summary = summarize_rows(leaderboard_rows(), METRICS).set_index("strategy")
    assert summary.loc["isogclr", "linear_top1_p_holm"] >= summary.loc["isogclr", "linear_top1_p"]


def test_build_leaderboard_writes_tables_and_figures(tmp_path):
    rows = leaderboard_rows()
    counts = json.dumps([500, 100, 10])
    rows["class_counts"] = counts
    rows["tau_by_class"] = [None] * 3 + [json.dumps([0.1, 0.2, 0.3])] * 4 + [None]
    for g in ("many", "medium", "few", "head", "mid", "tail"):
        rows[f"linear_{g}"] = rows[f"knn200_{g}"] = 70.0
    out = build_leaderboard(rows, tmp_path / "board", metrics=METRICS)
    names = sorted(p.name for p in (tmp_path / "board").iterdir())
    figures = ["accuracy", "forest_cifar10-lt", "groups_cifar10-lt", "tau_cifar10-lt"]
    assert names == sorted(["figures.md", "leaderboard.csv", "leaderboard.md",
                            *(f"{f}.{ext}" for f in figures for ext in ("pdf", "png"))])
    assert sorted(p.name for p in out.files) == names
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert md == out.markdown
    # isogclr has the best mean, but its interval overlaps fixed's: not bold
    assert "| isogclr | 4 | 80.62 ± 4.83 | 85.62 ± 4.83 |" in md
    assert "| sogclr | 1 | 74.00 ± – |" in md
    assert "weighted kNN, k=200" in md  # every column is labelled with its protocol
    assert pd.read_csv(tmp_path / "board" / "leaderboard.csv").shape[0] == 3
    assert "|" not in out.terminal and max(map(len, out.terminal.splitlines())) <= 120


def test_the_best_cell_is_bold_only_when_its_interval_separates_it(tmp_path):
    rows = [make_row("fixed", s, 80.0 + 0.1 * s) for s in range(3)]
    rows += [make_row("isogclr", s, 90.0 + 0.1 * s) for s in range(3)]
    md = build_leaderboard(pd.DataFrame(rows), tmp_path, metrics=METRICS).markdown
    assert "| isogclr | 3 | **85.10 ± 0.25** | **90.10 ± 0.25** |" in md


def test_several_subsets_report_their_variance_beside_the_seed_noise(tmp_path):
    rows = []
    for subset, offset in ((0, 0.0), (1, 4.0), (2, 8.0)):
        config = {"strategy": "isogclr", "epochs": 5, "subset_seed": subset, "hyperparameters": {}}
        rows += [make_row("isogclr", s, 80.0 + offset + s, config=config, lt_hash=f"sub{subset}",
                          config_hash=f"iso-{subset}") for s in range(3)]
    board = build_leaderboard(pd.DataFrame(rows), tmp_path, metrics=METRICS, figures=False)
    subsets = pd.read_csv(tmp_path / "leaderboard_subsets.csv")
    assert subsets.loc[0, "subsets"] == 3 and subsets.loc[0, "label"] == "isogclr"
    assert subsets.loc[0, "linear_top1_between_sd"] == pytest.approx(4.0)  # means 81, 85, 89
    assert subsets.loc[0, "linear_top1_within_sd"] == pytest.approx(1.0)  # seeds 0, 1, 2 in every subset
    assert "## Variance over long-tailed subsets" in board.markdown
