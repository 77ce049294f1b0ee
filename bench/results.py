"""Result rows (`runs.csv`) and leaderboards built from them.

A row is a flat dict, one per run. `append_row` rewrites the CSV atomically with the union of the columns, so a new
metric shows up as a new column and older rows get blanks. `build_leaderboard` aggregates rows over seeds per
(strategy, dataset): mean ± 95 % Student-t confidence interval, and a paired t-test against the `fixed` baseline on
the seeds both have. Every output file is written to a temporary file in its folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from scipy import stats

from tempbench.atomic import write_atomic  # re-exported

KEY_COLUMNS = ("strategy", "dataset", "seed")
METRICS = ("knn200_top1", "linear_top1", "linear_few", "linear_tail")  # aggregated and paired against the baseline
OPTIONAL_METRICS = ("tau_spearman",)  # aggregated where the rows have them
BASELINE = "fixed"
LABELS = {"knn200_top1": "kNN-200 top-1", "linear_top1": "linear top-1", "linear_few": "linear few",
          "linear_tail": "linear tail", "tau_spearman": "τ Spearman"}
MARKDOWN_DELTAS = ("linear_top1", "knn200_top1")  # the paired tests shown in Markdown (all are in the CSV)


# ---- rows ---------------------------------------------------------------------------------------------------------
def append_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> Path:
    """Append one flat row to the CSV at `path` (created if missing), atomically, with the union of the columns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(path.parent):
        columns, rows = _read_csv_cells(path)
        columns += [c for c in row if c not in columns]
        rows.append({c: _cell(v) for c, v in row.items()})
        write_atomic(path, lambda fh: _write_csv(fh, columns, rows), text=True)
    return path


def read_rows(path: str | os.PathLike[str]) -> pd.DataFrame:
    """All rows of a results CSV as a DataFrame (blank cells are NaN)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path} (runs append their rows there; see `append_row`)")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"results file {path} is empty") from exc


def _read_csv_cells(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file() or path.stat().st_size == 0:
        return [], []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _write_csv(fh: IO[str], columns: list[str], rows: list[dict[str, str]]) -> None:
    writer = csv.DictWriter(fh, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _cell(value: Any) -> str:
    """A CSV cell: blank for None/NaN, repr for floats (round-trips), JSON for lists and dicts."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on the folder (POSIX flock), so two processes appending at once lose no row."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; appends from one process at a time are still atomic
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# ---- statistics ---------------------------------------------------------------------------------------------------
def mean_ci(values: Any) -> tuple[float, float, int]:
    """(mean, 95 % CI half-width t_{0.975, n-1} · sd / √n, n) of the finite values; half-width NaN when n < 2."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), 0
    if x.size == 1:
        return float(x[0]), float("nan"), 1
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half), int(x.size)


def paired_test(treatment: pd.Series, baseline: pd.Series) -> dict[str, float]:
    """Paired t-test of treatment − baseline over the seeds (the Series' index) both have with finite values.

    Returns diff (mean difference), diff_ci95 (its CI half-width), p (two-sided, scipy.stats.ttest_rel) and pairs;
    NaN except `pairs` with fewer than 2 pairs, and p is NaN when every difference is the same (t undefined).
    """
    joined = pd.concat({"a": treatment, "b": baseline}, axis=1, join="inner").astype(np.float64).dropna()
    n = len(joined)
    out = {"diff": float("nan"), "diff_ci95": float("nan"), "p": float("nan"), "pairs": float(n)}
    if n < 2:
        return out
    diff = joined["a"].to_numpy() - joined["b"].to_numpy()
    out["diff"], out["diff_ci95"], _ = mean_ci(diff)
    if np.ptp(diff) > 1e-12 * max(1.0, float(np.abs(diff).max())):  # else scipy warns and returns NaN
        out["p"] = float(stats.ttest_rel(joined["a"], joined["b"]).pvalue)
    return out


# ---- leaderboard --------------------------------------------------------------------------------------------------
def check_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Validated copy: required columns present, seeds integers, metrics numeric; the last row of a repeated
    (strategy, dataset, seed) wins (a rerun replaces the earlier one)."""
    missing = [c for c in (*KEY_COLUMNS, *METRICS) if c not in rows.columns]
    if missing:
        raise ValueError(f"result rows lack column(s) {missing}; have {sorted(map(str, rows.columns))}")
    if rows.empty:
        raise ValueError("there are no result rows")
    rows = rows.copy()
    for col in ("seed", *METRICS, *(m for m in OPTIONAL_METRICS if m in rows.columns)):
        try:
            rows[col] = pd.to_numeric(rows[col])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"column {col!r} must be numeric: {exc}") from exc
    if rows["seed"].isna().any() or (rows["seed"] % 1 != 0).any():
        raise ValueError("column 'seed' must hold an integer in every row")
    rows["seed"] = rows["seed"].astype(np.int64)
    rows["strategy"], rows["dataset"] = rows["strategy"].astype(str), rows["dataset"].astype(str)
    return rows.drop_duplicates(subset=list(KEY_COLUMNS), keep="last")


def summarize_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, strategy): seeds, <m>_mean, <m>_ci95, <m>_n, and against `fixed` <m>_diff,
    <m>_diff_ci95, <m>_p, <m>_pairs (NaN for `fixed` itself, for datasets without it, and below 2 pairs)."""
    rows = check_rows(rows)
    metrics = [*METRICS, *(m for m in OPTIONAL_METRICS if m in rows.columns)]
    out = []
    for (dataset, strategy), group in rows.groupby(["dataset", "strategy"], sort=True):
        rec: dict[str, Any] = {"dataset": dataset, "strategy": strategy, "seeds": len(group)}
        base = rows[(rows["dataset"] == dataset) & (rows["strategy"] == BASELINE)].set_index("seed")
        for m in metrics:
            rec[f"{m}_mean"], rec[f"{m}_ci95"], rec[f"{m}_n"] = mean_ci(group[m])
        for m in METRICS:
            test = paired_test(group.set_index("seed")[m], base[m]) if strategy != BASELINE else {}
            for key in ("diff", "diff_ci95", "p", "pairs"):
                rec[f"{m}_{key}"] = test.get(key, float("nan"))
        out.append(rec)
    return pd.DataFrame(out)


def build_leaderboard(rows: pd.DataFrame, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write leaderboard.md, leaderboard.csv and PNG figures into out_dir, atomically.

    Returns {"summary": DataFrame (see `summarize_rows`), "markdown": str, "files": [Path, ...]}.
    """
    out_dir = Path(out_dir)
    rows = check_rows(rows)
    summary = summarize_rows(rows)
    markdown = format_markdown(summary)
    files = [write_atomic(out_dir / "leaderboard.md", lambda fh: fh.write(markdown)),
             write_atomic(out_dir / "leaderboard.csv", lambda fh: summary.to_csv(fh, index=False))]
    files += save_leaderboard_figures(rows, summary, out_dir)
    return {"summary": summary, "markdown": markdown, "files": files}


def format_markdown(summary: pd.DataFrame) -> str:
    """One Markdown table per dataset: strategies as rows, mean ± 95 % CI per metric (best mean in bold), and the
    paired difference to `fixed` (mean ± CI half-width, p-value, number of paired seeds)."""
    lines = ["# Leaderboard", "", "Generated by `tempbench leaderboard` from the result rows; do not edit by hand.",
             "Cells: mean ± 95 % CI half-width (Student t) over seeds, `–` with one seed. Δ: paired t-test against "
             f"`{BASELINE}` on the seeds both ran.", ""]
    for dataset, table in summary.groupby("dataset", sort=True):
        metrics = [m for m in (*METRICS, *OPTIONAL_METRICS)
                   if f"{m}_mean" in table.columns and table[f"{m}_mean"].notna().any()]
        header = ["strategy", "seeds", *(LABELS[m] for m in metrics), *(f"Δ {LABELS[m]} vs {BASELINE}"
                                                                          for m in MARKDOWN_DELTAS)]
        lines += [f"## {dataset}", "", _md_row(header), _md_row(["---"] * len(header))]
        best = {m: table[f"{m}_mean"].max() for m in metrics if m not in OPTIONAL_METRICS}
        for _, rec in table.iterrows():
            cells = [str(rec["strategy"]), str(rec["seeds"])]
            cells += [_bold(_pm(rec[f"{m}_mean"], rec[f"{m}_ci95"]), rec[f"{m}_mean"] == best.get(m)) for m in metrics]
            cells += [_delta(rec, m) for m in MARKDOWN_DELTAS]
            lines.append(_md_row(cells))
        lines.append("")
    return "\n".join(lines)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _pm(mean: float, half: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.2f} ± " + (f"{half:.2f}" if np.isfinite(half) else "–")


def _bold(text: str, flag: bool) -> str:
    return f"**{text}**" if flag and text != "–" else text


def _delta(rec: pd.Series, metric: str) -> str:
    if not np.isfinite(rec[f"{metric}_diff"]):
        return ""
    p = rec[f"{metric}_p"]
    p_text = f"p={p:.3g}" if np.isfinite(p) else "p=–"
    diff, half, pairs = rec[f"{metric}_diff"], rec[f"{metric}_diff_ci95"], int(rec[f"{metric}_pairs"])
    return f"{diff:+.2f} ± {half:.2f} ({p_text}, n={pairs})"


# ---- figures ------------------------------------------------------------------------------------------------------
def save_leaderboard_figures(rows: pd.DataFrame, summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """accuracy.png (kNN-200 and linear top-1 per dataset and strategy, CI bars), groups_<dataset>.png
    (many/medium/few, or head/mid/tail where a shot group is empty) and tau_<dataset>.png (class-mean τ vs class
    count, where rows carry tau_by_class and class_counts)."""
    from .eval.figures import save_bar_figure, save_curves_figure

    files = [save_bar_figure(summary, "dataset", ["knn200_top1", "linear_top1"], out_dir / "accuracy.png",
                             labels=LABELS)]
    for dataset, group in rows.groupby("dataset", sort=True):
        names = _group_names(group)
        if names:
            table = _group_summary(group, names)
            path = out_dir / f"groups_{_slug(dataset)}.png"
            files.append(save_bar_figure(table, "group", ["knn200", "linear"], path, title=str(dataset),
                                         labels={"knn200": "kNN-200 top-1", "linear": "linear top-1"}))
        tau = _tau_by_strategy(group)
        if tau:
            files.append(save_curves_figure(tau, out_dir / f"tau_{_slug(dataset)}.png", title=str(dataset)))
    return files


def _group_names(rows: pd.DataFrame) -> list[str]:
    """many/medium/few when every shot group has a value for this dataset, else head/mid/tail, else nothing."""
    for names in (["many", "medium", "few"], ["head", "mid", "tail"]):
        cols = [f"linear_{g}" for g in names]
        if all(c in rows.columns and pd.to_numeric(rows[c], errors="coerce").notna().any() for c in cols):
            return names
    return []


def _group_summary(rows: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    out = []
    for strategy, sub in rows.groupby("strategy", sort=True):
        for g in names:
            rec: dict[str, Any] = {"strategy": strategy, "group": g}
            for proto in ("knn200", "linear"):
                col = f"{proto}_{g}"
                values = pd.to_numeric(sub[col], errors="coerce") if col in sub.columns else []
                rec[f"{proto}_mean"], rec[f"{proto}_ci95"], _ = mean_ci(values)
            out.append(rec)
    return pd.DataFrame(out)


def _tau_by_strategy(rows: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """strategy -> (class counts, class-mean τ averaged over seeds) from the JSON columns, where present."""
    if "tau_by_class" not in rows.columns or "class_counts" not in rows.columns:
        return {}
    out = {}
    for strategy, sub in rows.groupby("strategy", sort=True):
        sub = sub[sub["tau_by_class"].notna() & sub["class_counts"].notna()]
        if sub.empty:
            continue
        taus = np.array([_json_floats(v, "tau_by_class") for v in sub["tau_by_class"]], dtype=np.float64)
        counts = np.asarray(_json_floats(sub["class_counts"].iloc[0], "class_counts"), dtype=np.float64)
        if taus.ndim != 2 or taus.shape[1] != counts.size:
            raise ValueError(f"{strategy}: tau_by_class lists must all have one entry per class ({counts.size})")
        seen = (~np.isnan(taus)).sum(axis=0)
        out[str(strategy)] = (counts, np.where(seen > 0, np.nansum(taus, axis=0) / np.maximum(seen, 1), np.nan))
    return out


def _json_floats(text: Any, column: str) -> list[float]:
    try:
        values = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {column!r} must hold a JSON list of numbers, got {text!r}") from exc
    return [float("nan") if v is None else float(v) for v in values]


def _slug(name: Any) -> str:
    """A file-name-safe version of a dataset name ("imagefolder:/data/x" -> "imagefolder-data-x")."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", str(name)).strip("-") or "dataset"
