"""rliable's stratified-bootstrap intervals and probability of improvement in the leaderboard, and the declared
primary metric's Holm family, against hand computations (Mann–Whitney by a double loop, Holm by hand)."""

from __future__ import annotations

import json
import math
from itertools import product

import numpy as np
import pandas as pd
import pytest
from rliable import library, metrics

from tempbench.cli import main
from tempbench.eval import Metric
from tempbench.eval import metrics as registry
from tempbench.leaderboard import append_row, build_leaderboard, holm, summarize_rows
from tempbench.leaderboard.bootstrap import cell_intervals, improvement, mean_interval

REPS = 200  # the default 2,000 only narrows the percentile noise; a test needs the maths, not the third decimal
METRICS = ["knn200_top1", "linear_top1"]


def mann_whitney(x, y) -> float:
    """P(X > Y) + ½ P(X = Y) over every pair, by a double loop."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in product(x, y)) / (len(x) * len(y))


def make_row(strategy, seed, value, dataset="digits-lt", **extra):
    config = {"strategy": strategy, "epochs": 5, "hyperparameters": {}}
    return {"strategy": strategy, "dataset": dataset, "seed": seed, "config": json.dumps(config),
            "config_hash": f"{dataset}-{strategy}", "lt_hash": "abc", "knn200_top1": value,
            "linear_top1": value + 5.0, **extra}


def board_rows(datasets=("digits-lt",)) -> pd.DataFrame:
    """fixed and three strategies on each dataset, 3 seeds each, with ties between cells."""
    values = {"fixed": [70.0, 72.0, 74.0], "isogclr": [73.0, 74.0, 78.0], "sogclr": [69.0, 72.0, 72.0],
              "learnable": [71.0, 70.5, 76.0]}
    return pd.DataFrame([make_row(s, seed, v + 2.0 * d, dataset=name) for d, name in enumerate(datasets)
                         for s, vs in values.items() for seed, v in enumerate(vs)])


# ---- probability of improvement ---------------------------------------------------------------------------------
def test_probability_of_improvement_is_the_mann_whitney_statistic():
    x, y = [73.0, 74.0, 78.0, 72.0], [70.0, 72.0, 74.0]  # a tie at 72 and at 74
    # by hand: 73 beats 2, 74 beats 2 and ties 1, 78 beats 3, 72 beats 1 and ties 1 -> (8 + 2 · ½) / 12 = 0.75
    assert mann_whitney(x, y) == 0.75
    cols = cell_intervals("knn200_top1", x, y, reps=REPS)
    assert cols["knn200_top1_poi"] == pytest.approx(0.75)
    assert cols["knn200_top1_poi_lo"] <= 0.75 <= cols["knn200_top1_poi_hi"]
    assert cols["knn200_top1_poi_lo"] < cols["knn200_top1_poi_hi"]  # 3-4 seeds: a wide interval, not a point


def test_a_lower_is_better_metric_is_negated(monkeypatch):
    loss = Metric("boot_test_loss", "loss", "a lower-is-better column", compute=None, higher_is_better=False,
                  unit="")
    monkeypatch.setitem(registry._REGISTRY, loss.name, loss)
    x, y = [0.2, 0.3, 0.5], [0.4, 0.6, 0.3]
    cols = cell_intervals("boot_test_loss", x, y, reps=REPS)
    assert cols["boot_test_loss_poi"] == pytest.approx(mann_whitney([-v for v in x], [-v for v in y]))
    assert cols["boot_test_loss_poi"] == pytest.approx(6.5 / 9)  # 0.2 beats 3, 0.3 beats 2 and ties 1, 0.5 beats 1


def test_the_memoised_bootstrap_is_rliables_own():
    """The per-resample memo changes the cost, never a number: rliable called directly, same seed, same interval."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(1.0, 1.0, (4, 2)), rng.normal(0.0, 1.0, (3, 2))  # 2 tasks: the mean over tasks
    ours = improvement(x, y, reps=REPS, seed=7)
    np.random.seed(7)  # rliable resamples with numpy's global generator
    point, intervals = library.get_interval_estimates({"k": [x, y]}, metrics.probability_of_improvement, reps=REPS)
    assert ours == pytest.approx((point["k"], *np.ravel(intervals["k"])))
    assert ours[0] == pytest.approx(np.mean([mann_whitney(x[:, t], y[:, t]) for t in range(2)]))


def test_too_few_seeds_or_no_baseline_give_nan():
    assert all(math.isnan(v) for v in mean_interval([3.0, float("nan")]))
    cols = cell_intervals("knn200_top1", [1.0, 2.0], None, reps=REPS)
    assert math.isnan(cols["knn200_top1_poi"]) and cols["knn200_top1_boot_lo"] <= 1.5
    assert math.isnan(cell_intervals("knn200_top1", [1.0, 2.0], [3.0], reps=REPS)["knn200_top1_poi_hi"])


# ---- the leaderboard's columns ----------------------------------------------------------------------------------
def test_the_bootstrap_is_seeded_brackets_the_mean_and_leaves_the_global_generator_alone(tmp_path):
    np.random.seed(11)
    expected_draw = np.random.rand()
    np.random.seed(11)
    first = build_leaderboard(board_rows(), tmp_path / "a", metrics=METRICS, figures=False, bootstrap_reps=REPS)
    assert np.random.rand() == expected_draw  # the caller's global state is restored
    again = build_leaderboard(board_rows(), tmp_path / "b", metrics=METRICS, figures=False, bootstrap_reps=REPS)
    columns = [f"{m}_{c}" for m in METRICS for c in ("boot_lo", "boot_hi", "poi", "poi_lo", "poi_hi")]
    pd.testing.assert_frame_equal(first.summary[columns], again.summary[columns])
    s = first.summary.set_index("label")
    for m in METRICS:
        assert (s[f"{m}_boot_lo"] <= s[f"{m}_mean"]).all() and (s[f"{m}_mean"] <= s[f"{m}_boot_hi"]).all()
    iso = s.loc["isogclr"]
    assert iso["knn200_top1_poi"] == pytest.approx(mann_whitney([73.0, 74.0, 78.0], [70.0, 72.0, 74.0]))
    assert math.isnan(s.loc["fixed", "knn200_top1_poi"])  # the baseline has none
    # the bootstrap interval of a mean lies within the seeds' range (with 3 seeds it is that range: an all-min
    # resample has probability 1/27 > 2.5 %); with 8 seeds, another seed gives other bounds
    assert 73.0 <= iso["knn200_top1_boot_lo"] < iso["knn200_top1_boot_hi"] <= 78.0
    eight = [70.0, 71.5, 72.0, 74.0, 75.5, 76.0, 79.0, 80.0]
    assert mean_interval(eight, reps=REPS, seed=0) == mean_interval(eight, reps=REPS, seed=0)
    assert mean_interval(eight, reps=REPS, seed=0) != mean_interval(eight, reps=REPS, seed=1)
    assert "P(>fixed) kNN-200 top-1" in first.markdown
    assert f"| {iso['knn200_top1_poi']:.2f} [{iso['knn200_top1_poi_lo']:.2f}, " in first.markdown
    assert "P>fixed" in first.terminal and max(map(len, first.terminal.splitlines())) <= 120


def test_across_datasets_averages_each_datasets_probability(tmp_path):
    rows = board_rows(("digits-lt", "cifar10-lt"))
    rows = pd.concat([rows, pd.DataFrame([make_row("isogclr", 3, 60.0, dataset="cifar10-lt")])])  # seed 3: dropped
    board = build_leaderboard(rows, tmp_path, metrics=METRICS, figures=False, bootstrap_reps=REPS)
    across = board.across.set_index("label")
    assert set(across.index) == {"isogclr", "sogclr", "learnable"}  # fixed is the baseline
    # the same values shifted by 2 on the second dataset: each dataset's probability is the same
    expected = np.mean([mann_whitney([73.0, 74.0, 78.0], [70.0, 72.0, 74.0])] * 2)
    iso = across.loc["isogclr"]
    assert iso["poi"] == pytest.approx(expected) and iso["runs"] == 3 and iso["baseline_runs"] == 3
    assert iso["poi_lo"] <= iso["poi"] <= iso["poi_hi"]
    assert "## Across datasets" in board.markdown and "averaged over the 2 datasets" in board.markdown
    one = build_leaderboard(board_rows(), tmp_path / "one", metrics=METRICS, figures=False, bootstrap_reps=REPS)
    assert "Across datasets" not in one.markdown and one.across.empty


# ---- the declared primary metric ----------------------------------------------------------------------------------
def test_holm_corrects_the_primary_metrics_family_only(tmp_path):
    rows = board_rows(("digits-lt", "cifar10-lt"))
    rows["linear_top1"] = rows["linear_top1"] + np.tile([0.0, 0.4, -0.3], len(rows) // 3)  # other p-values
    board = build_leaderboard(rows, tmp_path, metrics=METRICS, figures=False, bootstrap_reps=REPS,
                              primary_metric="linear_top1")
    s = board.summary
    p = s["linear_top1_p"].to_numpy()
    family = np.flatnonzero(np.isfinite(p))
    assert len(family) == 6  # 3 strategies × 2 datasets against fixed
    assert s["linear_top1_p_holm"].tolist() == pytest.approx(holm(p.tolist()), nan_ok=True)
    smallest = family[np.argmin(p[family])]
    assert s["linear_top1_p_holm"].iloc[smallest] == pytest.approx(min(1.0, 6 * p[smallest]))  # Holm by hand
    assert s["knn200_top1_p_holm"].isna().all() and s["knn200_top1_p"].notna().sum() == 6  # uncorrected
    assert "Holm over the 6 Δ of linear_top1, the suite's declared primary metric" in board.markdown
    assert "exploratory, n 3)" in board.markdown  # the kNN Δ
    assert "Δ linear top-1 vs fixed" in board.terminal  # the primary metric heads the terminal's Δ


def test_without_a_primary_metric_every_metric_is_its_own_family():
    s = summarize_rows(board_rows(("digits-lt", "cifar10-lt")), METRICS)
    for m in METRICS:
        assert s[f"{m}_p_holm"].tolist() == pytest.approx(holm(s[f"{m}_p"].tolist()), nan_ok=True)
    assert "knn200_top1_poi" not in s  # summarize_rows' default: means only, no bootstrap


def test_a_bad_primary_metric_is_a_one_line_value_error(tmp_path):
    with pytest.raises(ValueError, match="unknown metric 'knn200_top'") as unknown:
        build_leaderboard(board_rows(), tmp_path, metrics=METRICS, primary_metric="knn200_top", figures=False)
    with pytest.raises(ValueError, match="not one of the leaderboard's metrics") as absent:
        build_leaderboard(board_rows(), tmp_path, metrics=["knn200_top1"], primary_metric="linear_top1",
                          figures=False)
    assert "\n" not in str(unknown.value) and "\n" not in str(absent.value)


def test_the_cli_takes_a_primary_metric_and_reads_the_folders_rulesets(tmp_path, capsys):
    for row in board_rows().to_dict(orient="records"):
        append_row(tmp_path / "runs.csv", row)
    runs = str(tmp_path / "runs.csv")
    assert main(["leaderboard", runs, "--metric", "knn200_top1", "--metric", "linear_top1", "--primary-metric",
                 "knn200_top1", "--no-figures"]) == 0
    assert "Holm over the 3 Δ of knn200_top1" in (tmp_path / "leaderboard.md").read_text()
    assert main(["leaderboard", runs, "--primary-metric", "knn_top1", "--no-figures"]) == 2
    assert "unknown metric 'knn_top1'" in capsys.readouterr().err
    (tmp_path / "rulesets.json").write_text("{not json")
    assert main(["leaderboard", runs, "--no-figures"]) == 2
    assert "rulesets.json is not readable JSON" in capsys.readouterr().err


def test_the_bootstrap_does_not_depend_on_the_order_of_the_rows(tmp_path):
    rows = board_rows()
    shuffled = rows.sample(frac=1.0, random_state=3).reset_index(drop=True)
    a = build_leaderboard(rows, tmp_path / "a", metrics=METRICS, figures=False, bootstrap_reps=REPS).summary
    b = build_leaderboard(shuffled, tmp_path / "b", metrics=METRICS, figures=False, bootstrap_reps=REPS).summary
    columns = [f"{m}_{c}" for m in METRICS for c in ("boot_lo", "boot_hi", "poi", "poi_lo", "poi_hi")]
    pd.testing.assert_frame_equal(a.set_index("label")[columns].sort_index(),
                                  b.set_index("label")[columns].sort_index())
