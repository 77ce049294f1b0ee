"""Sensitivity reports: spread of the final metric over a study's trials, the cross-strategy ranking, and the files.

    summaries = {name: summarize_study(study) for name, study in studies.items()}
    write_report(summaries, studies, Path("runs/sens"), command="tempbench sensitivity ...")

Sensitivity = how much the final metric moves across a strategy's search space: the interquartile range (IQR) and the
worst-to-best gap over COMPLETE trials, fANOVA importances per hyperparameter, and a figure of the metric against each
hyperparameter. Strategies are ranked by IQR, by gap and by best metric.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from optuna.distributions import CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from tempbench.datasets.files import write_atomic

from .sensitivity import GRID_ATTR, HPARAMS_ATTR

log = logging.getLogger(__name__)

def summarize_study(study: Any) -> dict[str, Any]:
    """Spread of the final metric over the COMPLETE trials of `study`: best / median / worst, quartiles, IQR,
    worst-to-best gap, trial counts, fANOVA hyperparameter importances ({} when not computable), best params and
    the grid evaluated (None for a TPE search)."""

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    maximize = study.direction == StudyDirection.MAXIMIZE
    summary: dict[str, Any] = {
        "study": study.study_name, "strategy": study.user_attrs.get("tempbench.strategy"),
        "metric": study.user_attrs.get("tempbench.metric", "objective"), "direction": study.direction.name.lower(),
        "n_complete": len(complete), "n_pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
        "n_failed": len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))),
        "best": None, "median": None, "worst": None, "q1": None, "q3": None, "iqr": None, "gap": None,
        "best_trial": None, "best_params": {}, "importances": _importances(study, complete),
        "grid": study.user_attrs.get(GRID_ATTR)}
    if not complete:
        return summary
    values = np.array([t.value for t in complete])
    q1, median, q3 = (float(q) for q in np.percentile(values, [25, 50, 75]))
    best = max(complete, key=lambda t: t.value) if maximize else min(complete, key=lambda t: t.value)
    worst = float(values.min() if maximize else values.max())
    summary.update(best=float(best.value), median=median, worst=worst, q1=q1, q3=q3, iqr=q3 - q1,
                   gap=abs(float(best.value) - worst), best_trial=best.number,
                   best_params=best.user_attrs.get(HPARAMS_ATTR, best.params))
    return summary


def _importances(study: Any, complete: list) -> dict[str, float]:
    """fANOVA importances of the params that vary across >= 2 complete trials; {} when there is nothing to rank."""

    names = {name for t in complete for name in t.params}
    varying = sorted(n for n in names if len({repr(t.params.get(n)) for t in complete}) > 1)
    if len(complete) < 2 or not varying:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # seeded: the report must be reproducible
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varying)
    except (ValueError, RuntimeError) as exc:  # e.g. a conditional param missing from some trials
        log.info("no importances for %s: %s", study.study_name, exc)
        return {}
    return {name: float(value) for name, value in found.items()}


def rank_strategies(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per strategy, least sensitive first (smallest IQR), with its rank by IQR, by gap and by best metric."""
    names = list(summaries)
    maximize = all(summaries[n]["direction"] == "maximize" for n in names)
    ranks = {"rank_iqr": _ranks(names, lambda n: summaries[n]["iqr"], descending=False),
             "rank_gap": _ranks(names, lambda n: summaries[n]["gap"], descending=False),
             "rank_best": _ranks(names, lambda n: summaries[n]["best"], descending=maximize)}
    rows = [{"strategy": n, **{k: summaries[n][k] for k in _NUMBERS}, **{k: r[n] for k, r in ranks.items()}}
            for n in names]
    return sorted(rows, key=lambda row: (row["rank_iqr"] is None, row["rank_iqr"] or 0))


_NUMBERS = ("best", "median", "worst", "q1", "q3", "iqr", "gap", "n_complete", "n_pruned", "n_failed")


def _ranks(names: list[str], key: Callable[[str], float | None], descending: bool) -> dict[str, int | None]:
    """1 = first; strategies without a value (no complete trial) get None."""
    ordered = sorted((n for n in names if key(n) is not None), key=key, reverse=descending)
    return {n: (ordered.index(n) + 1 if n in ordered else None) for n in names}


def write_report(summaries: dict[str, dict[str, Any]], studies: dict[str, Any], out_dir: Path,
                 command: str | None = None) -> Path:
    """Write `sensitivity.md`, `sensitivity.csv` (the cross-strategy ranking), `sensitivity-trials-NAME.csv` and
    `figures/sensitivity-NAME.png` (metric against each hyperparameter) into `out_dir`, each file atomically.
    `command`: the command line that produced the studies, quoted in the report. Returns the Markdown path."""
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    ranking = rank_strategies(summaries)
    _write_atomic(out_dir / "sensitivity.csv", _csv_text(ranking).encode())
    sections = []
    for name, summary in summaries.items():
        _write_atomic(out_dir / f"sensitivity-trials-{name}.csv", _csv_text(_trial_rows(studies[name])).encode())
        figure = _plot_study(name, studies[name], summary)
        if figure is not None:
            _write_atomic(out_dir / "figures" / f"sensitivity-{name}.png", figure)
        sections.append(_strategy_section(name, summary, has_figure=figure is not None))
    head = ["# Hyperparameter sensitivity", ""]
    if command:
        head += [f"Made by `{command}`.", ""]
    text = "\n".join([*head, *_ranking_section(ranking), *sections])
    path = out_dir / "sensitivity.md"
    _write_atomic(path, text.encode())
    return path


def _ranking_section(ranking: list[dict[str, Any]]) -> list[str]:
    lines = ["## Ranking", "", "Less sensitive = smaller interquartile range (IQR) of the final metric over the "
             "trials; gap = worst-to-best.", "",
             "| strategy | rank by IQR | IQR | rank by gap | gap | rank by best | best | median | complete | pruned |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in ranking:
        lines.append(f"| {r['strategy']} | {_fmt(r['rank_iqr'])} | {_fmt(r['iqr'])} | {_fmt(r['rank_gap'])} | "
                     f"{_fmt(r['gap'])} | {_fmt(r['rank_best'])} | {_fmt(r['best'])} | {_fmt(r['median'])} | "
                     f"{r['n_complete']} | {r['n_pruned']} |")
    return [*lines, ""]


def _strategy_section(name: str, s: dict[str, Any], has_figure: bool) -> str:
    lines = [f"## {name}", "",
             f"Study `{s['study']}`: {s['n_complete']} complete, {s['n_pruned']} pruned, {s['n_failed']} failed "
             f"trials; metric `{s['metric']}` ({s['direction']}).", "", *_space_lines(s.get("grid")),
             "| best | Q1 | median | Q3 | worst | IQR | gap |", "|---|---|---|---|---|---|---|",
             "| " + " | ".join(_fmt(s[k]) for k in ("best", "q1", "median", "q3", "worst", "iqr", "gap")) + " |", "",
             f"Best trial: #{_fmt(s['best_trial'])}, `{json.dumps(s['best_params'], sort_keys=True)}`", "",
             "### Importance (fANOVA)", ""]
    if s["importances"]:
        lines += ["| hyperparameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in s["importances"].items()]
    else:
        lines.append("Not computable: it needs at least 2 complete trials and a hyperparameter that varies.")
    lines.append("")
    if has_figure:
        lines += [f"![{name}: metric against each hyperparameter](figures/sensitivity-{name}.png)", ""]
    lines += [f"All trials: [sensitivity-trials-{name}.csv](sensitivity-trials-{name}.csv)", ""]
    return "\n".join(lines)


def _space_lines(grid: dict[str, dict[str, list]] | None) -> list[str]:
    """The grid a --grid study evaluated (say a reduced one exactly), or that the points came from a TPE search."""
    if grid is None:
        return ["Search: seeded TPE over the strategy's search space.", ""]
    values = {name: v for part in grid.values() for name, v in part.items()}
    shown = " × ".join(f"{name} ∈ {{{', '.join(map(str, v))}}}" for name, v in values.items())
    return [f"Grid: {shown}.", ""]


def _trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, its params and the metrics it reported."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        metrics = {k: v for k, v in t.user_attrs.items() if not k.startswith("tempbench.")}
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, **t.params, **metrics})
    return rows


def _plot_study(name: str, study: Any, summary: dict[str, Any]) -> bytes | None:
    """PNG bytes of one scatter per hyperparameter (metric vs value; pruned trials as grey crosses), or None."""

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    params = sorted({p for t in trials for p in t.params})
    if not params:
        return None
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot: never touches the user's interactive backend
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, param in zip(axes, params, strict=False):
        _scatter_param(ax, trials, param, summary)
    for ax in axes[len(params):]:
        ax.set_visible(False)
    fig.suptitle(f"{name}: {summary['metric']} over {summary['n_complete']} complete trials")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _scatter_param(ax: Any, trials: list, param: str, summary: dict[str, Any]) -> None:

    for state, style in ((TrialState.PRUNED, {"marker": "x", "color": "0.6", "label": "pruned (last value)"}),
                         (TrialState.COMPLETE, {"marker": "o", "color": "C0", "label": "complete"})):
        points = [(t.params[param], t.value) for t in trials
                  if t.state == state and param in t.params and t.value is not None]
        if points:
            ax.scatter(*zip(*points, strict=True), s=22, **style)
    best = [t for t in trials if t.number == summary["best_trial"] and param in t.params]
    if best:
        ax.scatter([best[0].params[param]], [best[0].value], marker="*", s=140, color="C3", label="best")
    if _is_log_scaled(trials, param):
        ax.set_xscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel(summary["metric"])
    ax.legend(fontsize="x-small")


def _is_log_scaled(trials: list, param: str) -> bool:
    """Log x where the search space is log; for grid (categorical) values, where they span a decade or more."""

    dist = next(t.distributions[param] for t in trials if param in t.distributions)
    if not isinstance(dist, CategoricalDistribution):
        return bool(dist.log)
    values = dist.choices
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values)
    return numeric and max(values) / min(values) >= 10


def _csv_text(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _write_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda fh: fh.write(data), text=False)
