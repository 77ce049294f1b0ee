"""The tuned ruleset and the τ-matched control (`tempbench.study.tuning`, `tempbench.leaderboard.rulesets`): the
design, the val-only choice, where a choice sits in its space, the suite's [tuning] and [controls] checks, and a
tuned suite end to end through `tempbench run` (tiny runs: the plumbing is under test, not the strategies)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tempbench.cli import main
from tempbench.config import build_suite, load_suite
from tempbench.leaderboard.rulesets import decomposition
from tempbench.strategies import get_strategy_class
from tempbench.study.tuning import TuningPlan, at_edges, design, positions

TUNED = """
name = "tiny-tuned"
datasets = ["digits-lt"]
strategies = ["fixed", "isogclr"]
seeds = [0, 1]
primary_metric = "knn200_top1"
[run]
encoder = "small_cnn"
projector_hidden = 32
projector_out = 16
epochs = 1
batch_size = 256
device = "cpu"
progress = false
[tuning]
trials = 2
metric = "val_knn200_top1"
seeds = [100]
[controls]
tau_matched = ["isogclr"]
"""


def suite_table(**changes: object) -> dict:
    table = {"name": "t", "datasets": ["digits-lt"], "strategies": ["fixed", "isogclr"], "seeds": 2,
             "tuning": {"trials": 2, "metric": "val_knn200_top1", "seeds": [100]}}
    return {**table, **changes}


# ---- the design -----------------------------------------------------------------------------------------------------
def test_design_is_seeded_inside_the_space_and_space_filling() -> None:
    cls = get_strategy_class("fixed")
    a = design(cls, 8, seed=0, epochs=10, batch_size=256)
    assert a == design(cls, 8, seed=0, epochs=10, batch_size=256)  # every worker and rerun: the same points
    assert a != design(cls, 8, seed=1, epochs=10, batch_size=256)
    taus = np.log([p["tau"] for p in a])
    low, high = (math.log(x) for x in (cls.space["tau"].low, cls.space["tau"].high))
    assert ((low <= taus) & (taus <= high)).all()
    # a Sobol design of 8 points in one dimension puts exactly one point in each eighth of the (log) range
    assert sorted(np.floor((taus - low) / (high - low) * 8).astype(int).tolist()) == list(range(8))


def test_positions_and_edges_by_hand() -> None:
    cls = get_strategy_class("fixed")
    low, high = cls.space["tau"].low, cls.space["tau"].high
    middle = math.sqrt(low * high)  # the middle of a log range
    assert positions(cls, {"tau": middle}, epochs=10, batch_size=256)["tau"] == pytest.approx(0.5)
    assert positions(cls, {"tau": low}, epochs=10, batch_size=256)["tau"] == pytest.approx(0.0)
    assert at_edges({"tau": 0.05, "rho": 0.5}) == ["tau"] and at_edges({"tau": 0.95}) == ["tau"]
    assert at_edges({"tau": 0.5}) == []


# ---- the choice reads the validation metric only ------------------------------------------------------------------
def plan_and_rows(metric_values: dict[tuple[str, int, int], float], test_values: dict | None = None):
    suite = build_suite(suite_table(tuning={"trials": 3, "metric": "val_knn200_top1", "seeds": [100, 101]}), "t")
    plan = TuningPlan.of(suite, {"epochs": 1})
    rows = []
    for point in plan.points:
        for seed in (100, 101):
            value = metric_values.get((point.strategy, point.index, seed), 50.0)
            test = (test_values or {}).get((point.strategy, point.index), 50.0)
            rows.append({"config_hash": point.config_hash, "seed": seed, "val_knn200_top1": value,
                         "knn200_top1": test, "run_id": f"{point.strategy}-{point.index}-{seed}"})
    return plan, pd.DataFrame(rows)


def test_choice_is_the_best_mean_over_tuning_seeds_and_ignores_test() -> None:
    values = {("fixed", 1, 100): 80.0, ("fixed", 1, 101): 60.0,  # mean 70: best for fixed
              ("fixed", 2, 100): 90.0, ("fixed", 2, 101): 40.0,  # mean 65, best single seed
              ("isogclr", 0, 100): 55.0, ("isogclr", 0, 101): 55.0}
    test = {("fixed", 0): 99.0, ("isogclr", 2): 99.0}  # a test value that would win if it were read
    plan, rows = plan_and_rows(values, test)
    chosen = {c.strategy: c for c in plan.choose(rows)}
    assert chosen["fixed"].point == 1 and chosen["fixed"].value == pytest.approx(70.0)
    assert chosen["isogclr"].point == 0 and chosen["fixed"].trials == 3 and chosen["fixed"].seeds == 2
    scrambled = rows.assign(knn200_top1=np.random.default_rng(0).permutation(rows["knn200_top1"].to_numpy()))
    assert [c.point for c in plan.choose(scrambled)] == [c.point for c in plan.choose(rows)]
    assert [c.point for c in plan.choose(rows.drop(columns="knn200_top1"))] == [1, 0]


def test_a_point_missing_a_tuning_seed_cannot_be_chosen() -> None:
    plan, rows = plan_and_rows({("fixed", 1, 100): 99.0, ("fixed", 1, 101): 99.0})
    fixed_1 = next(p.config_hash for p in plan.points if p.strategy == "fixed" and p.index == 1)
    partial = rows[~((rows["config_hash"] == fixed_1) & (rows["seed"] == 101))]
    assert next(c for c in plan.choose(partial) if c.strategy == "fixed").point != 1
    fixed = {p.config_hash for p in plan.points if p.strategy == "fixed"}
    with pytest.raises(ValueError, match="no design point of 'fixed'"):
        plan.choose(rows[~rows["config_hash"].isin(fixed)])


def test_tuning_runs_hold_out_validation_data_and_reporting_runs_do_not() -> None:
    suite = build_suite(suite_table(), "t")
    plan = TuningPlan.of(suite, {"epochs": 1})
    assert {c.val_fraction for c in plan.configs} == {0.1} and {c.seed for c in plan.configs} == {100}
    assert len(plan.configs) == 2 * 2  # 2 strategies × 2 points × 1 tuning seed
    assert {c.val_fraction for c in suite.configs()} == {0.0}


# ---- bad [tuning] / [controls] tables: one line each ----------------------------------------------------------------
@pytest.mark.parametrize(("changes", "message"), [
    ({"tuning": {"trials": 0, "metric": "val_knn200_top1"}}, "trials must be a whole number >= 1"),
    ({"tuning": {"trials": 4, "metric": "knn200_top1"}}, "not a validation metric"),
    ({"tuning": {"trials": 4, "metric": "val_r_mean"}}, "not a validation metric"),
    ({"tuning": {"trials": 4, "metric": "val_knn200_top1", "seeds": [1]}}, "disjoint"),
    ({"tuning": {"trials": 4, "metric": "val_knn200_top1", "strategies": ["sogclr"]}}, "strategy in"),
    ({"tuning": {"trials": 4, "metric": "val_knn200_top1", "budget": 3}}, "unknown key in \\[tuning\\]"),
    ({"controls": {"tau_matched": ["fixed"]}}, "one global τ"),
    ({"controls": {"tau_matched": ["sogclr"]}}, "strategy in \\[controls\\]"),
    ({"controls": {"matched": ["isogclr"]}}, "unknown key in \\[controls\\]"),
    ({"primary_metric": "val_knn200_top1"}, "primary_metric"),
])
def test_bad_tables_are_one_clear_error(changes, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        build_suite(suite_table(**changes), "t")
    assert "\n" not in str(info.value)


def test_bad_tuning_through_the_cli_is_exit_2(tmp_path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TUNED.replace("trials = 2", "trials = 0"))
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "out"), "--no-tracking"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trials must be" in err[0]
    assert not (tmp_path / "out" / "runs.csv").exists()


# ---- the decomposition adds up ------------------------------------------------------------------------------------
def test_the_three_parts_add_up_to_the_gain_on_every_seed() -> None:
    rng = np.random.default_rng(3)
    cells = {"S": 70 + rng.normal(size=5), "base": 68 + rng.normal(size=5), "fixed": 69 + rng.normal(size=5),
             "est": 69.5 + rng.normal(size=5)}
    rows = pd.DataFrame([{"config_hash": c, "pair_key": f"{s}/x", "knn200_top1": v[s], "dataset": "d"}
                         for c, v in cells.items() for s in range(5)])
    summary = pd.DataFrame({"cell": ["S", "base", "fixed", "est"], "label": ["S", "B", "F", "E"],
                            "baseline": ["B", "", "B", "B"]})
    record = {"tau_matched": [{"dataset": "d", "strategy": "isogclr", "cell": "S", "tau": 0.1,
                               "controls": {"fixed": "fixed", "estimator": "est"}}]}
    parts = decomposition(rows, summary, record, "knn200_top1").set_index("part")
    assert parts.loc["total", "diff"] == pytest.approx(
        parts.loc[["temperature", "estimator", "individual"], "diff"].sum())
    expected = stats.ttest_rel(cells["S"], cells["est"]).pvalue
    assert parts.loc["individual", "p"] == pytest.approx(expected)
    assert parts.loc["individual", "diff"] == pytest.approx(np.mean(cells["S"] - cells["est"]))


# ---- end to end -----------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("quick_probe")
def test_a_tuned_suite_with_controls_end_to_end(tmp_path, capsys) -> None:
    path = tmp_path / "tiny-tuned.toml"
    path.write_text(TUNED)
    out = tmp_path / "out"
    assert main(["run", "--suite", str(path), "--out", str(out), "--devices", "cpu", "--no-tracking",
                 "--no-figures"]) == 0
    err = capsys.readouterr().err
    assert "tuning: 4 design points" in err and "τ-matched controls of isogclr" in err
    trials = pd.read_csv(out / "tuning.csv")
    assert len(trials) == 4 and set(trials["seed"]) == {100}
    record = json.loads((out / "rulesets.json").read_text())
    tuned = {info["strategy"]: info for info in record["cells"].values() if "tuned" in info["rulesets"]}
    for strategy, info in tuned.items():  # the choice is the val-best point of the tuning record
        own = trials[trials["strategy"] == strategy]
        assert info["tuned"]["point"] == int(own.loc[own["val_knn200_top1"].idxmax(), "point"])
        assert info["tuned"]["trials"] == 2 and info["tuned"]["metric"] == "val_knn200_top1"
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["seed"]) == {0, 1}  # the tuning seed's runs live in out/tuning only
    assert len(pd.read_csv(out / "tuning" / "runs.csv")) == 4
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["ruleset"]) >= {"defaults", "tuned", "control"}
    fixed_tuned = board.loc[(board["strategy"] == "fixed") & (board["ruleset"] == "tuned"), "label"].item()
    assert fixed_tuned == "fixed · tuned"
    others = board[board["label"] != fixed_tuned]
    assert (others["baseline"] == fixed_tuned).all()  # the tuned fixed is every Δ's baseline
    matched = board[board["ruleset"] == "control"]
    assert sorted(matched["strategy"]) == ["fixed", "sogclr"] and (matched["seeds"] == 2).all()
    assert "Where the gain comes from" in (out / "leaderboard.md").read_text()
    # the same command again trains nothing
    assert main(["run", "--suite", str(path), "--out", str(out), "--devices", "cpu", "--no-tracking",
                 "--no-figures"]) == 0
    assert "0 runs trained" in capsys.readouterr().err


def test_shipped_suites_still_load() -> None:
    assert load_suite("quick").tuning is None


def test_without_tuning_the_defaults_fixed_is_every_cells_baseline_and_controls_get_one_too() -> None:
    from tempbench.leaderboard.rulesets import relabel

    rows = pd.DataFrame({"config_hash": ["F", "C", "I", "S"], "dataset": ["d"] * 4,
                         "strategy": ["fixed", "fixed", "isogclr", "sogclr"]})
    record = {"cells": {"F": {"dataset": "d", "strategy": "fixed", "rulesets": ["defaults"]},
                        "I": {"dataset": "d", "strategy": "isogclr", "rulesets": ["defaults"]}},
              "tau_matched": [{"dataset": "d", "strategy": "isogclr", "cell": "I", "tau": 0.005,
                               "controls": {"fixed": "C", "estimator": "S"}}]}
    labels = {"F": "fixed (tau=0.01)", "C": "fixed (tau=0.005)", "I": "isogclr", "S": "sogclr"}
    # the leaderboard's own rule picks the first fixed by hash: the control "C" here
    new_labels, base = relabel(record, rows, labels, {"F": None, "C": None, "I": "C", "S": "C"})
    assert base == {"F": None, "C": "F", "I": "F", "S": "F"}
    assert new_labels["F"] == "fixed" and new_labels["C"] == "fixed · τ-matched (0.005)"
