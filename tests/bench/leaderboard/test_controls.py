"""The class-order placebo and the long-tail interaction test against scipy on hand-built rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tempbench.leaderboard import build_leaderboard
from tempbench.leaderboard.controls import (
    declared_interactions,
    format_controls,
    interaction_test,
    placebo_table,
    welch,
)

LT_COUNTS = [100, 46, 21, 10]
LT_CUT = {"profile": "exp", "imbalance_factor": 0.1, "n_max": 100, "seed": 0}
# per seed: the balanced isogclr runs' class-mean τ (None: a class without τ) and the long-tailed runs' own ρ
BAL_TAU = [[0.20, 0.18, 0.19, 0.15], [0.21, 0.22, 0.17, None], [0.10, 0.30, 0.20, 0.25]]
LT_RHO = [0.8, 1.0, 0.4]
# kNN accuracy (%) per seed: fixed and isogclr on each dataset
ACC = {("lt", "fixed"): [70.0, 72.0, 69.0], ("lt", "isogclr"): [74.0, 73.5, 72.0],
       ("bal", "fixed"): [90.0, 91.0, 89.5], ("bal", "isogclr"): [90.5, 91.2, 90.5]}


def row(strategy: str, dataset: str, seed: int) -> dict:
    lt = dataset == "lt"
    config = {"strategy": strategy, "hyperparameters": {}, "dataset": dataset, "long_tail": 0.1 if lt else 1.0,
              "epochs": 5, "seed": seed}
    out = {"strategy": strategy, "dataset": dataset, "seed": seed, "config": json.dumps(config),
           "config_hash": f"{strategy}-{dataset}", "lt_hash": "h", "knn200_top1": ACC[dataset, strategy][seed],
           "long_tail": json.dumps(LT_CUT) if lt else np.nan, "class_counts": json.dumps(LT_COUNTS if lt else [50] * 4),
           "tau_spearman": np.nan, "tau_by_class": np.nan}
    if strategy == "isogclr":
        out["tau_spearman"] = LT_RHO[seed] if lt else 0.1
        out["tau_by_class"] = json.dumps([0.2, 0.15, 0.12, 0.1] if lt else BAL_TAU[seed])
    return out


@pytest.fixture
def rows() -> pd.DataFrame:
    return pd.DataFrame([row(s, d, seed) for d in ("lt", "bal") for s in ("fixed", "isogclr") for seed in range(3)])


def t_interval(values: list[float]) -> tuple[float, float]:
    x = np.asarray(values)
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def test_placebo_is_spearman_of_balanced_tau_with_the_long_tailed_counts(rows) -> None:
    table = placebo_table(rows)
    assert len(table) == 1
    rec = table.iloc[0]
    assert (rec["strategy"], rec["long_tailed"], rec["balanced"], rec["class_order"]) == ("isogclr", "lt", "bal",
                                                                                       "label")
    per_seed = [stats.spearmanr([0.20, 0.18, 0.19, 0.15], LT_COUNTS).statistic,
                stats.spearmanr([0.21, 0.22, 0.17], LT_COUNTS[:3]).statistic,  # the class without τ drops out
                stats.spearmanr([0.10, 0.30, 0.20, 0.25], LT_COUNTS).statistic]
    mean, half = t_interval(per_seed)
    assert rec["placebo_mean"] == pytest.approx(mean) and rec["placebo_ci95"] == pytest.approx(half)
    assert rec["placebo_n"] == 3
    own_mean, own_half = t_interval(LT_RHO)
    assert rec["tau_spearman_mean"] == pytest.approx(own_mean) and rec["tau_spearman_ci95"] == pytest.approx(own_half)


def test_the_placebo_needs_the_same_configuration_and_class_count(rows) -> None:
    other = rows.copy()
    other.loc[other["dataset"] == "bal", "config"] = other.loc[other["dataset"] == "bal", "config"].str.replace(
        '"epochs": 5', '"epochs": 6')
    assert placebo_table(other)["balanced"].tolist() == [""]  # another schedule: no placebo
    three = rows.copy()
    three.loc[three["dataset"] == "bal", "class_counts"] = json.dumps([50] * 3)
    assert placebo_table(three)["balanced"].tolist() == [""]
    assert placebo_table(rows.drop(columns=["long_tail"])).empty


def test_interaction_is_welch_on_per_seed_gains(rows) -> None:
    res = interaction_test(rows, "isogclr", "lt", "bal")
    gain = {d: np.subtract(ACC[d, "isogclr"], ACC[d, "fixed"]) for d in ("lt", "bal")}  # err_fixed − err_S
    rel = {d: gain[d] / (100.0 - np.asarray(ACC[d, "fixed"])) for d in ("lt", "bal")}
    for scale, values in (("abs", gain), ("rel", rel)):
        ref = stats.ttest_ind(values["lt"], values["bal"], equal_var=False)
        assert res[f"{scale}_t"] == pytest.approx(ref.statistic) and res[f"{scale}_p"] == pytest.approx(ref.pvalue)
        one_sided = stats.ttest_ind(values["lt"], values["bal"], equal_var=False, alternative="greater").pvalue
        assert res[f"{scale}_p_greater"] == pytest.approx(one_sided)
        assert res[f"{scale}_diff"] == pytest.approx(values["lt"].mean() - values["bal"].mean())
        assert (res[f"{scale}_lt_mean"], res[f"{scale}_lt_ci95"]) == pytest.approx(t_interval(list(values["lt"])))
    assert res["abs_lt_mean"] == pytest.approx((4.0 + 1.5 + 3.0) / 3)
    assert (res["n_lt"], res["n_bal"]) == (3, 3)


def test_welch_is_undefined_without_spread() -> None:
    assert math.isnan(welch([1.0, 1.0], [2.0, 2.0])["p"]) and welch([1.0, 1.0], [2.0, 2.0])["diff"] == -1.0
    assert math.isnan(welch([1.0], [2.0, 3.0])["t"])


def test_interaction_names_what_is_missing(rows) -> None:
    with pytest.raises(ValueError, match="0 cells of 'sogclr' on lt"):
        interaction_test(rows, "sogclr", "lt", "bal")
    with pytest.raises(ValueError, match="no rows of dataset 'digits'"):
        interaction_test(rows, "isogclr", "lt", "digits")
    no_fixed = rows[~((rows["dataset"] == "bal") & (rows["strategy"] == "fixed"))]
    with pytest.raises(ValueError, match="'isogclr' on bal has no 'fixed' cell"):
        interaction_test(no_fixed, "isogclr", "lt", "bal")


def test_the_leaderboard_appends_both_sections(rows, tmp_path) -> None:
    assert declared_interactions(rows) == [("isogclr", "lt", "bal")]
    board = build_leaderboard(rows, tmp_path, metrics=["knn200_top1"], figures=False)
    assert "## Class-order control and placebo" in board.markdown and "## Long-tail interaction" in board.markdown
    assert "| isogclr | lt (177) | bal (200) |" in board.markdown
    assert (tmp_path / "leaderboard.md").read_text() == board.markdown
    balanced_only = rows[rows["dataset"] == "bal"]
    assert format_controls(balanced_only, "knn200_top1") == ""
