"""Rulesets and τ-matched controls on a leaderboard, from the folder's `rulesets.json` (`tempbench.study.tuning`).

A cell is still one resolved configuration; the record says which ruleset each belongs to — `defaults`, `tuned`,
or both when a strategy's tuned choice is its defaults — and which cells are the τ-matched controls of a per-sample
strategy. With a tuned `fixed` in the record, it is the baseline of every Δ on its dataset (Musgrave et al., "A Metric
Learning Reality Check", ECCV 2020: a gain is measured against a tuned baseline). Labels name the ruleset
(`isogclr · tuned`, `fixed · τ-matched (0.144)`) instead of listing hyperparameter differences, and each tuned cell
carries its choice, the trials it had and the hyperparameters whose choice sits at an edge of their range.

The decomposition splits a per-sample strategy S's gain over the baseline `fixed` into three paired differences
that add up to it on every seed: the temperature (fixed at S's achieved median τ − the baseline), the estimator (the
global-τ strategy sharing S's estimator at that τ − fixed at that τ) and the individual τ (S − that strategy).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tempbench.eval import metric_label

from .stats import paired_test

TUNED_SUFFIX = " · tuned"
RULESETS_FILE = "rulesets.json"  # beside runs.csv, written by `tempbench run` (`tempbench.study.tuning`)


def read_rulesets(folder: str | Path) -> dict[str, Any] | None:
    """The folder's `rulesets.json`, or None without one (a folder of the defaults ruleset alone)."""
    path = Path(folder) / RULESETS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc}); rebuild it with the same `tempbench run`") from None


def relabel(record: Mapping[str, Any] | None, rows: pd.DataFrame, labels: dict[str, str],
            base: dict[str, str | None]) -> tuple[dict[str, str], dict[str, str | None]]:
    """Labels and baselines with the record's roles: a strategy's one defaults cell `S`, tuned cells `S · tuned`
    (`S (defaults = tuned)` when one cell is both), controls `fixed · τ-matched (τ)`, and the tuned `fixed` as every
    other cell's baseline on its dataset. Without a record both come back as given."""
    if not record:
        return labels, base
    cells = record.get("cells", {})
    labels, base = dict(labels), dict(base)
    defaults: dict[tuple[str, str], list[str]] = {}  # a strategy's defaults cells on a dataset (several: variants)
    for cell, info in cells.items():
        if cell in labels and "defaults" in info.get("rulesets", []):
            defaults.setdefault((info["dataset"], info["strategy"]), []).append(cell)
    for (_, strategy), found in defaults.items():
        if len(found) == 1:  # the tuned and control cells no longer make its label list hyperparameters
            labels[found[0]] = strategy
    for cell, info in cells.items():
        if cell not in labels:
            continue
        rulesets = info.get("rulesets", [])
        if rulesets == ["tuned"]:
            labels[cell] = f"{info['strategy']}{TUNED_SUFFIX}"
        elif "tuned" in rulesets:
            labels[cell] = f"{labels[cell]} (defaults = tuned)"
    for control in record.get("tau_matched", []):
        for role, cell in control["controls"].items():
            if cell in labels:
                what = "fixed" if role == "fixed" else rows.loc[rows["config_hash"] == cell, "strategy"].iloc[-1]
                labels[cell] = f"{what} · τ-matched ({control['tau']:.3g})"  # the strategy: "Where the gain..."
    # the baseline of every Δ on a dataset: the tuned fixed, else the defaults ruleset's one fixed (never a control)
    chosen = {dataset: found[0] for (dataset, strategy), found in defaults.items()
              if strategy == "fixed" and len(found) == 1}
    chosen.update({info["dataset"]: cell for cell, info in cells.items()
                   if info["strategy"] == "fixed" and "tuned" in info.get("rulesets", []) and cell in labels})
    datasets = rows.groupby("config_hash")["dataset"].last().to_dict()
    for cell in base:
        baseline = chosen.get(datasets.get(cell))
        if baseline is not None:
            base[cell] = baseline if cell != baseline else None
    return labels, base


def annotate(summary: pd.DataFrame, record: Mapping[str, Any] | None) -> pd.DataFrame:
    """`ruleset` (defaults / tuned / both / control) and `tuning` (the tuned cell's choice, trials, validation
    value and edges, in words) per summary row; unchanged without a record."""
    if not record or summary.empty:
        return summary
    cells = record.get("cells", {})
    controls = {cell for c in record.get("tau_matched", []) for cell in c["controls"].values()}
    summary = summary.copy()
    summary["ruleset"] = [("control" if cell in controls else
                           " = ".join(cells[cell]["rulesets"]) if cell in cells else "") for cell in summary["cell"]]
    summary["tuning"] = [describe_choice(cells.get(cell, {}).get("tuned")) for cell in summary["cell"]]
    return summary


def describe_choice(tuned: Mapping[str, Any] | None) -> str:
    """"rho=0.52, tau_init=0.12 (point 3 of 8, val_knn200_top1 91.20 over 1 seed; at an edge: tau_init)"."""
    if not tuned:
        return ""
    values = ", ".join(f"{k}={_short(v)}" for k, v in tuned["choice"].items() if k in tuned.get("positions", {}))
    edges = f"; at an edge: {', '.join(tuned['edges'])}" if tuned.get("edges") else ""
    searched = (f"point {tuned['point']} of {tuned['trials']}" if tuned["trials"] > 1
                else "nothing to search: its defaults")
    return (f"{values or 'defaults'} ({searched}, {tuned['metric']} {tuned['value']:.2f} over "
            f"{tuned['tuning_seeds']} seed{'s' if tuned['tuning_seeds'] != 1 else ''}{edges})")


def format_choices(summary: pd.DataFrame) -> str:
    """The Markdown section "Tuned choices": each tuned cell's chosen configuration, its trials, its validation value
    and the hyperparameters at an edge of their range; "" without tuned cells."""
    if "tuning" not in summary or not summary["tuning"].astype(bool).any():
        return ""
    lines = ["## Tuned choices", "", "Each strategy of the tuned ruleset searched its own declared space with the same "
             "number of Sobol points at the tuning seeds and kept the point with the best mean validation value "
             "(the test split was not read); every trial is in tuning.csv. A choice at an edge of its range means "
             "the optimum may lie outside the space.", "", "| dataset | configuration | choice |", "|---|---|---|"]
    for rec in summary[summary["tuning"].astype(bool)].itertuples():
        lines.append(f"| {rec.dataset} | {rec.label} | {rec.tuning} |")
    return "\n".join([*lines, "", ""])


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else json.dumps(value) if not isinstance(value, str) else value


# ---- where a gain comes from --------------------------------------------------------------------------------------
PARTS = (("total", "S − fixed (baseline)"), ("temperature", "fixed at S's median τ − fixed (baseline)"),
         ("estimator", "its global-τ estimator at that τ − fixed at that τ"),
         ("individual", "S − its global-τ estimator at that τ"))


def decomposition(rows: pd.DataFrame, summary: pd.DataFrame, record: Mapping[str, Any] | None,
                  metric: str) -> pd.DataFrame:
    """One row per τ-matched strategy cell and part of its gain (PARTS), each a paired difference over the seeds
    every cell involved has: diff, diff_ci95, p, pairs. Empty without τ-matched controls in the record."""
    if not record or not record.get("tau_matched"):
        return pd.DataFrame()
    baseline_of = dict(zip(summary["cell"], summary["baseline"]))
    label_to_cell = dict(zip(summary["label"], summary["cell"]))
    out = []
    for control in record["tau_matched"]:
        cell = control["cell"]
        base = label_to_cell.get(baseline_of.get(cell, ""))
        fixed, estimator = control["controls"].get("fixed"), control["controls"].get("estimator")
        series = {name: _by_pair(rows, c, metric) for name, c in
                  (("S", cell), ("base", base), ("fixed", fixed), ("estimator", estimator)) if c is not None}
        pairs = {"total": ("S", "base"), "temperature": ("fixed", "base"), "estimator": ("estimator", "fixed"),
                 "individual": ("S", "estimator")}
        common = None
        for s in series.values():
            common = s.index if common is None else common.intersection(s.index)
        for part, _ in PARTS:
            a, b = pairs[part]
            if a not in series or b not in series:
                continue
            test = paired_test(series[a].loc[common], series[b].loc[common])
            out.append({"dataset": control["dataset"], "strategy": control["strategy"], "tau": control["tau"],
                        "part": part, **test})
    return pd.DataFrame(out)


def _by_pair(rows: pd.DataFrame, cell: str, metric: str) -> pd.Series:
    """A cell's `metric` by pairing key (seed and long-tailed subset), for paired differences."""
    part = rows.loc[rows["config_hash"] == cell]
    return pd.to_numeric(part.set_index("pair_key")[metric], errors="coerce")


def format_decomposition(parts: pd.DataFrame, metric: str) -> str:
    """The Markdown section "Where the gain comes from", or "" when there is nothing to decompose."""
    if parts.empty:
        return ""
    lines = ["## Where the gain comes from", "",
             f"{metric_label(metric)}, paired over the seeds every cell has: the gain of a per-sample strategy S over "
             "the baseline `fixed` is the sum of the three parts below it (the temperature, the estimator, the "
             "individual τ). A part whose interval holds 0 is not shown to matter at these seeds.", "",
             "| dataset | S (median τ) | part | what | Δ | p | pairs |", "|---|---|---|---|---|---|---|"]
    what = dict(PARTS)
    for rec in parts.itertuples():
        delta = f"{rec.diff:+.2f} ± {rec.diff_ci95:.2f}" if np.isfinite(rec.diff) else "–"
        p = f"{rec.p:.2g}" if np.isfinite(rec.p) else "–"
        lines.append(f"| {rec.dataset} | {rec.strategy} ({rec.tau:.3g}) | {rec.part} | {what[rec.part]} | {delta} | "
                     f"{p} | {int(rec.pairs)} |")
    return "\n".join([*lines, ""])
