"""Leaderboards from result rows.

A cell is one resolved configuration on one dataset: rows are grouped by `config_hash` (the hash of the resolved
configuration without the seed), never by strategy name alone, so a 50-epoch rerun can never be averaged with
5-epoch seeds. Variants of one strategy get their own rows, labelled by the settings that differ. Each cell gets
mean ± 95 % Student-t CI over seeds per metric, and a paired t-test against its baseline — the `fixed` cell with the
same run settings — pairing only rows with the same seed and the same long-tailed subset (`lt_hash`). The p-values
of all the Δ tests of one metric are Holm-corrected together (the uncorrected p is kept beside); with a primary metric
declared before the runs, that metric's Δ are the only family and the others' p are exploratory. Beside the t
intervals, rliable's stratified-bootstrap interval of each mean and probability of improvement over the baseline
(`bootstrap`). The best mean of a column is bold only where its interval separates it from the runner-up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tempbench.eval import get_metric, list_metrics

from .bootstrap import BOOTSTRAP_SEED, cell_intervals
from .rulesets import annotate, relabel
from .stats import holm, mean_ci, paired_test

KEY_COLUMNS = ("strategy", "dataset", "seed", "config_hash")
BASELINE = "fixed"
# the seed (it varies within a cell) and execution settings (how, not what, a run computes): never in a label
IGNORED_IN_LABELS = ("seed", "device", "progress", "log_every", "checkpoint_every", "compile", "eval_backend")
# summarised, never paired: the τ analytics, and how often each per-sample state entry was updated
EXTRA_COLUMNS = ("tau_spearman", "tau_image_spearman", "tau_text_spearman", "state_visits_mean", "state_visits_min",
                 "tau_at_min", "tau_at_max")


def default_metrics(rows: pd.DataFrame) -> list[str]:
    """The registry's leaderboard metrics that these rows report (a finite value somewhere), of every pairing the
    rows hold (a row without a `pairing` column is a `views` row)."""
    pairings = set(rows["pairing"].dropna()) if "pairing" in rows else {"views"}
    return [m.name for m in list_metrics(split="test") if m.pairing in pairings
            and m.leaderboard and m.compute is not None and _has_values(rows, m.name)]


def _has_values(rows: pd.DataFrame, column: str) -> bool:
    return column in rows.columns and pd.to_numeric(rows[column], errors="coerce").notna().any()


def check_rows(rows: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Validated copy: key columns and metrics present, seeds integers, metrics numeric; the last row of a repeated
    (config, dataset, seed, subset) wins (a rerun replaces the earlier one)."""
    if rows.empty:
        raise ValueError("there are no result rows")
    missing = [c for c in (*KEY_COLUMNS, *metrics) if c not in rows.columns]
    if missing:
        raise ValueError(f"result rows lack column(s) {missing}; have {sorted(map(str, rows.columns))}")
    rows = rows.copy()
    for col in ("seed", *metrics, *(c for c in EXTRA_COLUMNS if c in rows.columns)):
        try:
            rows[col] = pd.to_numeric(rows[col])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"column {col!r} must be numeric: {exc}") from exc
    if rows["seed"].isna().any() or (rows["seed"] % 1 != 0).any():
        raise ValueError("column 'seed' must hold an integer in every row")
    rows["seed"] = rows["seed"].astype(np.int64)
    for col in ("strategy", "dataset", "config_hash"):
        rows[col] = rows[col].astype(str)
    rows["pair_key"] = rows["seed"].astype(str) + "/" + (rows["lt_hash"].astype(str) if "lt_hash" in rows else "")
    return rows.drop_duplicates(subset=["dataset", "config_hash", "pair_key"], keep="last")


# ---- cells ------------------------------------------------------------------------------------------------------
def cell_settings(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """config_hash -> its flattened resolved configuration (from the `config` column; `hyperparameters` as a
    fallback), without the seed and execution settings."""
    out = {}
    for cell, group in rows.groupby("config_hash", sort=False):
        raw = group["config"].iloc[-1] if "config" in group else None
        config = json.loads(raw) if isinstance(raw, str) else {}
        if not config and isinstance(group.get("hyperparameters", pd.Series([None])).iloc[-1], str):
            config = {"hyperparameters": json.loads(group["hyperparameters"].iloc[-1])}
        out[cell] = {k: v for k, v in _flatten(config).items() if k not in IGNORED_IN_LABELS}
    return out


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return flat


def cell_labels(cells: pd.DataFrame, settings: dict[str, dict[str, Any]]) -> dict[str, str]:
    """config_hash -> "strategy" when a strategy has one cell on a dataset, else "strategy (k=v, ...)" with the
    settings that differ between its cells (hyperparameter names without their prefix)."""
    labels = {}
    for (_, strategy), group in cells.groupby(["dataset", "strategy"], sort=False):
        hashes = list(dict.fromkeys(group["config_hash"]))
        keys = sorted({k for h in hashes for k in settings[h]} - {"strategy"})
        differ = [k for k in keys if len({json.dumps(settings[h].get(k), default=str) for h in hashes}) > 1]
        for h in hashes:
            parts = [f"{k.removeprefix('hyperparameters.')}={settings[h].get(k)}" for k in differ]
            labels[h] = f"{strategy} ({', '.join(parts)})" if parts else strategy
    return labels


def run_settings_of(settings: dict[str, Any]) -> str:
    """What must match for a baseline: every setting but the strategy and its hyperparameters."""
    return json.dumps({k: v for k, v in settings.items() if k != "strategy" and not k.startswith("hyperparameters.")},
                      sort_keys=True, default=str)


def baselines(rows: pd.DataFrame, settings: dict[str, dict[str, Any]]) -> dict[str, str | None]:
    """config_hash -> the `fixed` cell on the same dataset with the same run settings (the first by hash when
    several `fixed` variants match), or None."""
    out = {}
    for _, group in rows.groupby("dataset", sort=False):
        fixed = sorted(set(group.loc[group["strategy"] == BASELINE, "config_hash"]))
        for cell in dict.fromkeys(group["config_hash"]):
            match = [f for f in fixed if run_settings_of(settings[f]) == run_settings_of(settings[cell])]
            out[cell] = match[0] if match and cell not in fixed else None
    return out


# ---- the summary ------------------------------------------------------------------------------------------------
def summarize_rows(rows: pd.DataFrame, metrics: list[str] | None = None, *,
                   rulesets: Mapping[str, Any] | None = None, primary_metric: str | None = None,
                   bootstrap_reps: int = 0, bootstrap_seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """One row per (dataset, cell): label, strategy, seeds, subsets, baseline, and per metric <m>_mean, <m>_ci95,
    <m>_n, and against the baseline <m>_diff, <m>_diff_ci95, <m>_p, <m>_p_holm, <m>_pairs (NaN where there is no
    baseline or fewer than 2 pairs).

    Holm's family is every Δ of one metric, per metric; with `primary_metric` (one of `metrics`, declared before the
    runs) only that metric's Δ are corrected, and the others' <m>_p_holm are NaN (their p uncorrected: exploratory).
    `bootstrap_reps` > 0 adds rliable's columns per metric (`bootstrap.cell_intervals`): <m>_boot_lo, <m>_boot_hi
    and <m>_poi, <m>_poi_lo, <m>_poi_hi, with that many resamples from `bootstrap_seed`; 0 (the default here, for
    summaries of means only) leaves them out, `build_leaderboard` asks for them."""
    metrics = metrics if metrics is not None else default_metrics(rows)
    check_primary_metric(primary_metric, metrics)
    rows = check_rows(rows, metrics)
    settings = cell_settings(rows)
    labels, base = relabel(rulesets, rows, cell_labels(rows, settings), baselines(rows, settings))
    extra = [c for c in EXTRA_COLUMNS if _has_values(rows, c)]
    out = []
    for (dataset, cell), group in rows.groupby(["dataset", "config_hash"], sort=True):
        rec: dict[str, Any] = {"dataset": dataset, "cell": cell, "label": labels[cell],
                               "strategy": group["strategy"].iloc[-1], "seeds": len(group),
                               "subsets": group["lt_hash"].nunique() if "lt_hash" in group else 1,
                               "baseline": labels.get(base[cell]) if base[cell] else ""}
        reference = rows[(rows["dataset"] == dataset) & (rows["config_hash"] == base[cell])].set_index("pair_key")
        for m in [*metrics, *extra]:
            rec[f"{m}_mean"], rec[f"{m}_ci95"], rec[f"{m}_n"] = mean_ci(group[m])
        for m in metrics:
            test = paired_test(group.set_index("pair_key")[m], reference[m]) if base[cell] else {}
            for key in ("diff", "diff_ci95", "p", "pairs"):
                rec[f"{m}_{key}"] = test.get(key, float("nan"))
            if bootstrap_reps > 0:
                # the probability of improvement for the headline metric only: its bootstrap is a Mann–Whitney
                # test per resample (scipy, ~0.5 ms), minutes over every metric of a 10-seed board
                compared = base[cell] and m == (primary_metric or metrics[0])
                rec.update(cell_intervals(m, group[m], reference[m] if compared else None, reps=bootstrap_reps,
                                          seed=bootstrap_seed))
        out.append(rec)
    summary = annotate(pd.DataFrame(out).sort_values(["dataset", "label"], kind="stable").reset_index(drop=True),
                       rulesets)
    for m in metrics:  # the declared family only, or every metric's own
        corrected = primary_metric is None or m == primary_metric
        summary[f"{m}_p_holm"] = holm(summary[f"{m}_p"].tolist()) if corrected else float("nan")
    return summary


def check_primary_metric(primary_metric: str | None, metrics: list[str]) -> None:
    """A ValueError unless `primary_metric` is None or a registered metric among the leaderboard's `metrics`."""
    if primary_metric is None:
        return
    get_metric(primary_metric)  # unknown -> ValueError with a did-you-mean
    if primary_metric not in metrics:
        raise ValueError(f"primary metric {primary_metric!r} is not one of the leaderboard's metrics "
                         f"({', '.join(metrics)}): add it with --metric")


def leaderboard_metrics(rows: pd.DataFrame, metrics: list[str] | None, primary_metric: str | None) -> list[str]:
    """The metrics a leaderboard shows: `metrics` as given, else the registry's leaderboard metrics that the rows
    report (`default_metrics`), plus the declared primary metric when it is not one of those but the rows report
    it."""
    if metrics is not None:
        return metrics
    shown = default_metrics(rows)
    if primary_metric is not None and primary_metric not in shown and _has_values(rows, primary_metric):
        shown.append(primary_metric)
    return shown


def separated_best(table: pd.DataFrame, metric: str) -> Any:
    """The index of the cell whose mean is best and whose 95 % interval does not overlap the runner-up's; None
    when no cell is separated (or there are fewer than 2 cells with intervals)."""
    higher = get_metric(metric).higher_is_better
    ok = table[np.isfinite(table[f"{metric}_mean"]) & np.isfinite(table[f"{metric}_ci95"])]
    if len(ok) < 2:
        return None
    ranked = ok.sort_values(f"{metric}_mean", ascending=not higher)
    best, second = ranked.iloc[0], ranked.iloc[1]
    sign = 1.0 if higher else -1.0
    gap = sign * (best[f"{metric}_mean"] - second[f"{metric}_mean"])
    return ranked.index[0] if gap > best[f"{metric}_ci95"] + second[f"{metric}_ci95"] else None
