"""Controls of the long-tail claims (docs/design.md, "Comparisons: rulesets, controls, statistics").

Class order and placebo. On a long-tailed cut, "τ rises with class frequency" (`tau_spearman`: Spearman ρ of the
class-mean τ with the class counts) is confounded with which class is which: every seed of `digits-lt` makes digit 0
the head. Two controls separate them. The class-order control is a dataset of its own (a card such as
`digits-lt-reversed`, or `--set class_order=...`): its own ρ must stay high if τ follows frequency. The placebo asks
how much ρ class identity alone gives: the class-mean τ of a run on *balanced* data (`tau_by_class`), where frequency
cannot have shaped τ, against the long-tailed cut's counts, per seed. A placebo ρ near the long-tailed runs' own ρ
says the correlation is the classes', not their frequency's.

Interaction. "Strategy S gains more over `fixed` on the long tail" compares two datasets, so it is a test of an
interaction, not two separate paired tests: the per-seed gains S − fixed (paired by seed and subset within a
dataset) on the long-tailed dataset against those on the balanced one, by Welch's unequal-variance t-test (the
datasets' seeds are not paired with each other). Gains are read on absolute error (accuracy points, err_fixed −
err_S) and on relative error ((err_fixed − err_S) / err_fixed): a harder dataset leaves more error to remove, so a
gain larger in points may be no larger relatively. Compare against a balanced cut of the same size (the flat profile,
`digits-matched`), not the whole balanced dataset with 2.4× the images and steps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tempbench.eval import class_spearman, get_metric, metric_label

from .render import _md_row, _p, _pm
from .stats import holm, mean_ci
from .table import BASELINE, baselines, cell_labels, cell_settings, check_rows

# settings that say how the training split is cut: what may differ between the cells a control compares
CUT_SETTINGS = ("dataset", "long_tail", "long_tail_profile", "n_max", "n_total", "class_order", "subset_seed")
ROW_COLUMNS = ("strategy", "dataset", "config_hash", "long_tail", "class_counts")


def _json(cell: Any) -> Any:
    """A JSON cell of a row, None where blank (pandas reads "null" and empty cells as NaN)."""
    return json.loads(cell) if isinstance(cell, str) and cell.strip() else None


def is_long_tailed(cut: dict[str, Any] | None) -> bool:
    """Whether a row's long-tail description (its `long_tail` JSON) is an imbalanced cut: an imbalance factor < 1.
    Uncut data and the flat profile's matched-size cut are balanced."""
    return cut is not None and float(cut.get("imbalance_factor", 1.0)) < 1.0


def cross_dataset_keys(rows: pd.DataFrame) -> dict[str, str]:
    """config_hash -> the cell's strategy and settings without those of the cut (`CUT_SETTINGS`): cells with the same
    key ran the same configuration on differently cut data."""
    settings = cell_settings(rows)
    return {h: json.dumps([rows.loc[rows["config_hash"] == h, "strategy"].iloc[-1],
                           {k: v for k, v in s.items() if k not in CUT_SETTINGS}], sort_keys=True, default=str)
            for h, s in settings.items()}


def _annotated(rows: pd.DataFrame) -> pd.DataFrame | None:
    """The rows with parsed `cut` and `counts` columns and the cross-dataset `key`; None without the columns."""
    if any(c not in rows.columns for c in ROW_COLUMNS) or rows.empty:
        return None
    rows = rows.copy()
    for col in ("strategy", "dataset", "config_hash"):
        rows[col] = rows[col].astype(str)
    rows["cut"] = rows["long_tail"].map(_json)
    rows["counts"] = rows["class_counts"].map(lambda c: _json(c) or [])
    rows["key"] = rows["config_hash"].map(cross_dataset_keys(rows))
    return rows


# ---- class-order control and placebo --------------------------------------------------------------------------
def placebo_spearmans(balanced: pd.DataFrame, counts: Sequence[int]) -> list[float]:
    """Per balanced run (row), Spearman ρ of its class-mean τ (`tau_by_class`, JSON; null = a class without τ)
    against the long-tailed `counts` (C,); NaN where undefined (a constant τ, another class count, no τ)."""
    out = []
    for cell in balanced["tau_by_class"]:
        means = _json(cell)
        if not means or len(means) != len(counts):
            out.append(float("nan"))
            continue
        tau = np.array([np.nan if m is None else m for m in means], dtype=np.float64)
        out.append(class_spearman(tau, np.asarray(counts, dtype=np.float64))[0])
    return out


def placebo_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (long-tailed cell with a τ–count ρ, balanced dataset of the same class count run with the same
    configuration): strategy, label (the long-tailed cell's), long_tailed (dataset), class_order, counts (JSON),
    tau_spearman_mean/_ci95/_n (the long-tailed runs' own ρ over seeds), balanced (dataset, "" when none) and
    placebo_mean/_ci95/_n (ρ of the balanced runs' class-mean τ with these counts, one per seed). Empty when the
    rows hold no long-tailed τ–count ρ."""
    rows = _annotated(rows)
    if rows is None or "tau_spearman" not in rows or "tau_by_class" not in rows:
        return pd.DataFrame()
    rho = pd.to_numeric(rows["tau_spearman"], errors="coerce")
    long_tailed = rows[rows["cut"].map(is_long_tailed) & np.isfinite(rho)]
    balanced = rows[~rows["cut"].map(is_long_tailed) & rows["tau_by_class"].map(lambda c: bool(_json(c)))]
    labels = cell_labels(rows, cell_settings(rows))
    out = []
    for (dataset, cell, counts), group in long_tailed.groupby(
            ["dataset", "config_hash", long_tailed["counts"].map(json.dumps)], sort=True):
        cut = group["cut"].iloc[-1]
        base = {"strategy": group["strategy"].iloc[-1], "label": labels[cell], "long_tailed": dataset,
                "class_order": json.dumps(cut["class_order"]) if isinstance(cut.get("class_order"), list)
                else cut.get("class_order", "label"), "counts": counts}
        base["tau_spearman_mean"], base["tau_spearman_ci95"], base["tau_spearman_n"] = mean_ci(rho[group.index])
        same = balanced[(balanced["key"] == group["key"].iloc[-1])
                        & (balanced["counts"].map(len) == len(json.loads(counts)))]
        for other, runs in same.groupby("dataset", sort=True):
            mean, half, n = mean_ci(placebo_spearmans(runs, json.loads(counts)))
            out.append({**base, "balanced": other, "placebo_mean": mean, "placebo_ci95": half, "placebo_n": n})
        if same.empty:
            out.append({**base, "balanced": "", "placebo_mean": math.nan, "placebo_ci95": math.nan, "placebo_n": 0})
    return pd.DataFrame(out)


def format_placebo(table: pd.DataFrame) -> str:
    """The "Class-order control and placebo" Markdown section; nothing when the table has no placebo and a single
    class order (the leaderboard's τ column already shows that ρ)."""
    if table.empty or (not np.isfinite(table["placebo_mean"]).any() and table["class_order"].nunique() < 2):
        return ""
    lines = ["", "## Class-order control and placebo", "",
             "ρ: Spearman correlation of the class-mean τ with the training images per class, mean ± 95 % CI over "
             "seeds. *Own runs*: the long-tailed runs' own ρ (`tau_spearman`); a frequency effect keeps it under "
             "another class order. *Placebo*: the balanced runs' class-mean τ (same configuration) against this "
             "cut's counts, where frequency cannot have shaped τ: a placebo ρ near the own ρ means class identity, "
             "not frequency, explains it.", ""]
    header = ["configuration", "long-tailed cut", "class order", "ρ own runs", "balanced runs", "ρ placebo"]
    lines += [_md_row(header), _md_row(["---"] * len(header))]
    for _, rec in table.sort_values(["label", "long_tailed", "balanced"], kind="stable").iterrows():
        own = f"{_pm(rec['tau_spearman_mean'], rec['tau_spearman_ci95'])} (n {rec['tau_spearman_n']})"
        placebo = f"{_pm(rec['placebo_mean'], rec['placebo_ci95'])} (n {rec['placebo_n']})" if rec["placebo_n"] else "–"
        lines.append(_md_row([str(rec["label"]), str(rec["long_tailed"]), f"`{rec['class_order']}`", own,
                              str(rec["balanced"]) or "–", placebo]))
    return "\n".join([*lines, ""])


# ---- the long-tail × strategy interaction ----------------------------------------------------------------------
def seed_gains(rows: pd.DataFrame, strategy: str, dataset: str, metric: str) -> pd.DataFrame:
    """Per pair (seed/subset) of `strategy` and its `fixed` baseline (same run settings) on `dataset`: `abs`, the
    gain in accuracy points (err_fixed − err_S, err = 100 − accuracy %), and `rel`, (err_fixed − err_S) / err_fixed.
    `strategy` names a cell by its leaderboard label ("isogclr", "isogclr (rho=0.3)") or, when it has one cell
    there, by strategy name. ValueError when the cell or its baseline is missing or the name is ambiguous."""
    if not get_metric(metric).higher_is_better:
        raise ValueError(f"the interaction test reads error as 100 − {metric}, an accuracy; {metric} is not one")
    mine = rows[rows["dataset"].astype(str) == dataset]
    if mine.empty:
        raise ValueError(f"no rows of dataset {dataset!r}")
    data = check_rows(mine, [metric])
    settings = cell_settings(data)
    labels, base = cell_labels(data, settings), baselines(data, settings)
    cells = [h for h, label in labels.items() if label == strategy] or sorted(
        set(data.loc[data["strategy"] == strategy, "config_hash"]))
    if len(cells) != 1:
        raise ValueError(f"{len(cells)} cells of {strategy!r} on {dataset}; name one of "
                         f"{sorted(labels[h] for h in cells) or sorted(set(labels.values()))}")
    if base[cells[0]] is None:
        raise ValueError(f"{strategy!r} on {dataset} has no {BASELINE!r} cell with the same run settings")
    acc = pd.concat({"s": data[data["config_hash"] == cells[0]].set_index("pair_key")[metric],
                     "f": data[data["config_hash"] == base[cells[0]]].set_index("pair_key")[metric]},
                    axis=1, join="inner").dropna()
    err_s, err_f = 100.0 - acc["s"], 100.0 - acc["f"]
    return pd.DataFrame({"abs": err_f - err_s, "rel": (err_f - err_s) / err_f.where(err_f != 0)})


def welch(a: Any, b: Any) -> dict[str, float]:
    """Welch's t-test of mean(a) − mean(b) over the finite values: diff, t, p (two-sided) and p_greater (a > b);
    NaN with fewer than two values on a side or no variance on either (t undefined)."""
    a, b = (np.asarray(x, dtype=np.float64) for x in (a, b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    out = {"diff": float(a.mean() - b.mean()) if a.size and b.size else math.nan,
           "t": math.nan, "p": math.nan, "p_greater": math.nan}
    if min(a.size, b.size) < 2 or a.var(ddof=1) + b.var(ddof=1) == 0:
        return out
    res = stats.ttest_ind(a, b, equal_var=False)
    out["t"], out["p"] = float(res.statistic), float(res.pvalue)
    out["p_greater"] = float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    return out


def interaction_test(rows: pd.DataFrame, strategy: str, long_tailed: str, balanced: str,
                     metric: str = "knn200_top1") -> dict[str, Any]:
    """"Is `strategy`'s gain over `fixed` larger on `long_tailed` than on `balanced`?" (datasets by name), on
    `metric`. Returns the names, the pairs per dataset (n_lt, n_bal), and for each scale (abs: accuracy points,
    rel: relative error) the gains' mean ± 95 % CI on each dataset ({scale}_lt_mean, _lt_ci95, _bal_mean,
    _bal_ci95) and Welch's test of their difference ({scale}_diff, _t, _p two-sided, _p_greater: lt > bal)."""
    lt, bal = seed_gains(rows, strategy, long_tailed, metric), seed_gains(rows, strategy, balanced, metric)
    out: dict[str, Any] = {"strategy": strategy, "long_tailed": long_tailed, "balanced": balanced, "metric": metric,
                           "n_lt": len(lt), "n_bal": len(bal)}
    for scale in ("abs", "rel"):
        out[f"{scale}_lt_mean"], out[f"{scale}_lt_ci95"], _ = mean_ci(lt[scale])
        out[f"{scale}_bal_mean"], out[f"{scale}_bal_ci95"], _ = mean_ci(bal[scale])
        out |= {f"{scale}_{k}": v for k, v in welch(lt[scale], bal[scale]).items()}
    return out


def declared_interactions(rows: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The family a leaderboard tests when nobody declared one: (strategy, long-tailed, balanced) for every
    long-tailed dataset in label class order, every balanced dataset with the same class count (the matched-size
    one, if run, among them) and every strategy with a plain cell and a `fixed` baseline on both."""
    rows = _annotated(rows)
    if rows is None:
        return []
    by_dataset = {d: g for d, g in rows.groupby("dataset", sort=True)}
    kinds = {d: g["cut"].iloc[-1] for d, g in by_dataset.items()}
    sizes = {d: len(g["counts"].iloc[-1]) for d, g in by_dataset.items()}
    out = []
    for lt, cut in kinds.items():
        if not is_long_tailed(cut) or cut.get("class_order", "label") != "label":
            continue
        for bal in (d for d in kinds if not is_long_tailed(kinds[d]) and sizes[d] == sizes[lt]):
            both = set(by_dataset[lt]["strategy"]) & set(by_dataset[bal]["strategy"])
            out += [(s, lt, bal) for s in sorted(both - {BASELINE})] if BASELINE in both else []
    return out


def interaction_table(rows: pd.DataFrame, declared: Sequence[tuple[str, str, str]],
                      metric: str = "knn200_top1") -> pd.DataFrame:
    """`interaction_test` of each declared (strategy, long-tailed, balanced), with Holm-corrected two-sided p per
    scale over the family (abs_p_holm, rel_p_holm) and each dataset's training images (images_lt, images_bal)."""
    annotated = _annotated(rows)
    images = {} if annotated is None else {d: int(sum(g["counts"].iloc[-1])) for d, g in annotated.groupby("dataset")}
    table = pd.DataFrame([{**interaction_test(rows, s, lt, bal, metric), "images_lt": images.get(lt, 0),
                           "images_bal": images.get(bal, 0)} for s, lt, bal in declared])
    for scale in ("abs", "rel") if not table.empty else ():
        table[f"{scale}_p_holm"] = holm(table[f"{scale}_p"].tolist())
    return table


def format_interactions(table: pd.DataFrame) -> str:
    """The "Long-tail interaction" Markdown section (nothing for an empty table)."""
    if table.empty:
        return ""
    metric = metric_label(table["metric"].iloc[0])
    lines = ["", "## Long-tail interaction", "",
             f"Is a strategy's gain over `fixed` ({metric}) larger on the long-tailed dataset than on the balanced "
             "one? Gains per seed (paired with `fixed` within a dataset), mean ± 95 % CI; LT − BAL: Welch's t-test "
             "across the two datasets (p two-sided, Holm over this table per scale). Points: err_fixed − err; "
             "relative: (err_fixed − err) / err_fixed. A balanced dataset with more images than the long-tailed one "
             "also gives more steps: the matched-size one (same images) is the fair comparison.", ""]
    header = ["strategy", "long-tailed (images)", "balanced (images)", "gain LT, points", "gain BAL, points",
              "LT − BAL (p, Holm)", "relative gain LT", "relative gain BAL", "LT − BAL (p, Holm)"]
    lines += [_md_row(header), _md_row(["---"] * len(header))]
    for _, r in table.iterrows():
        cells = [str(r["strategy"]), f"{r['long_tailed']} ({r['images_lt']})", f"{r['balanced']} ({r['images_bal']})"]
        for scale, digits in (("abs", 2), ("rel", 3)):
            cells += [_pm(r[f"{scale}_lt_mean"], r[f"{scale}_lt_ci95"], digits),
                      _pm(r[f"{scale}_bal_mean"], r[f"{scale}_bal_ci95"], digits),
                      f"{r[f'{scale}_diff']:+.{digits}f} ({_p(r[f'{scale}_p'])}, {_p(r[f'{scale}_p_holm'])})"]
        lines.append(_md_row(cells))
    return "\n".join([*lines, ""])


def format_controls(rows: pd.DataFrame, metric: str) -> str:
    """Both sections for a leaderboard, each only where the rows allow it (the interaction on `metric`, over
    `declared_interactions`); "" for rows without long-tail columns (image–text runs) or a non-accuracy metric."""
    text = format_placebo(placebo_table(rows))
    if get_metric(metric).higher_is_better:
        text += format_interactions(interaction_table(rows, testable(rows, declared_interactions(rows), metric),
                                                      metric))
    return text


def testable(rows: pd.DataFrame, declared: Sequence[tuple[str, str, str]], metric: str) -> list[tuple[str, str, str]]:
    """The declared interactions whose cells and baselines exist on both datasets (a leaderboard skips the rest
    instead of failing; `interaction_test` names what is missing)."""
    def ok(strategy: str, dataset: str) -> bool:
        try:
            return len(seed_gains(rows, strategy, dataset, metric)) > 0
        except ValueError:
            return False

    return [(s, lt, bal) for s, lt, bal in declared if ok(s, lt) and ok(s, bal)]
