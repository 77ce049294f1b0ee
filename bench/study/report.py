"""Sensitivity reports: spread of the validation objective over a study's trials, next to the seed noise, the
cross-strategy ranking, and the files.

    summaries = {name: summarize_study(study, repeated) for name, (study, repeated) in studies.items()}
    write_report(summaries, {name: study ...}, Path("runs/sens"), command="tempbench sensitivity ...")

Sensitivity = how much the validation objective moves across a strategy's search space: the interquartile range
(IQR) and the worst-to-best gap over the trials (pruned ones at their last reported value, counted and marked),
divided by the seed noise where the study was repeated over seeds; fANOVA importances per hyperparameter once there
are enough complete trials; a figure of the objective against each hyperparameter. The test metric of every trial
is reported beside it and never chosen on. Strategies are ranked by IQR, by gap and by best objective.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from tempbench.figures import save_figure
from tempbench.util import write_atomic

from .figures import DPI, plot_study
from .repeats import seed_noise
from .sensitivity import GRID_ATTR, HPARAMS_ATTR, counts
from .workers import SURPLUS_ATTR

log = logging.getLogger(__name__)

MIN_IMPORTANCE_TRIALS = 8  # fANOVA's forest on fewer complete trials ranks noise


def summarize_study(study: Any, repeated: Any = None) -> dict[str, Any]:
    """Spread of the objective over the COMPLETE and PRUNED trials of `study` (pruned at their last value):
    best / median / worst, quartiles, IQR, gap, trial counts, fANOVA importances, best trial and params, the test
    metric at the best trial and over the trials, and, with the `repeated` study, the seed noise and the spread
    in units of it."""
    n = counts(study)
    summary: dict[str, Any] = {
        "study": study.study_name, "strategy": study.user_attrs.get("tempbench.strategy"),
        "metric": study.user_attrs.get("tempbench.metric", "objective"),
        "test_metric": study.user_attrs.get("tempbench.test_metric"), "direction": study.direction.name.lower(),
        "sampler": study.user_attrs.get("tempbench.sampler", "unknown"), "grid": study.user_attrs.get(GRID_ATTR),
        **{f"n_{k}": v for k, v in n.items()}, "best": None, "median": None, "worst": None, "q1": None,
        "q3": None, "iqr": None, "gap": None, "best_trial": None, "best_params": {}, "test_best": None,
        "test_median": None, "test_iqr": None, **_importances(study)}
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
              if t.value is not None]
    if trials:
        summary.update(_spread(trials, study.direction == StudyDirection.MAXIMIZE, summary["test_metric"]))
    noise = seed_noise(study, repeated)
    low, high = spread_ratio_interval([t.value for t in trials], [r["values"] for r in noise.get("configs", [])])
    return {**summary, **_noise(summary, noise), "iqr_over_seed_lo": low, "iqr_over_seed_hi": high}


BOOTSTRAP_REPS = 2000


def spread_ratio_interval(values: list[float], repeats: list[list[float]], reps: int = BOOTSTRAP_REPS,
                          seed: int = 0) -> tuple[float | None, float | None]:
    """95 % percentile-bootstrap interval of IQR ÷ seed std, the sensitivity ratio: each replicate resamples the
    trials' values (for the IQR) and, independently, each repeated configuration's values over seeds (for the pooled
    seed std), as `seed_noise` pools them. (None, None) with fewer than 4 trials or no configuration repeated over
    at least 2 seeds; replicates whose resampled seed std is 0 are dropped. Seeded: a report is reproducible."""
    trials = np.asarray(values, dtype=np.float64)
    groups = [np.asarray(v, dtype=np.float64) for v in repeats if len(v) > 1]
    if trials.size < 4 or not groups:
        return None, None
    rng = np.random.default_rng(seed)
    q1, q3 = np.percentile(trials[rng.integers(0, trials.size, (reps, trials.size))], [25, 75], axis=1)
    variances = np.stack([g[rng.integers(0, g.size, (reps, g.size))].var(axis=1, ddof=1) for g in groups])
    pooled = np.sqrt(variances.mean(axis=0))
    ok = pooled > 0
    if not ok.any():
        return None, None
    low, high = np.percentile((q3 - q1)[ok] / pooled[ok], [2.5, 97.5])
    return float(low), float(high)


def _spread(trials: list, maximize: bool, test_metric: str | None) -> dict[str, Any]:
    values = np.array([t.value for t in trials])
    q1, median, q3 = (float(q) for q in np.percentile(values, [25, 50, 75]))
    complete = [t for t in trials if t.state == TrialState.COMPLETE] or trials
    best = (max if maximize else min)(complete, key=lambda t: t.value)
    worst = float(values.min() if maximize else values.max())
    tests = np.array([t.user_attrs[test_metric] for t in trials if test_metric in t.user_attrs], dtype=float)
    t1, t_median, t3 = (float(q) for q in np.percentile(tests, [25, 50, 75])) if tests.size else (None,) * 3
    return {"best": float(best.value), "median": median, "worst": worst, "q1": q1, "q3": q3, "iqr": q3 - q1,
            "gap": abs(float(best.value) - worst), "best_trial": best.number,
            "best_params": best.user_attrs.get(HPARAMS_ATTR, best.params),
            "test_best": best.user_attrs.get(test_metric) if test_metric else None, "test_median": t_median,
            "test_iqr": None if t1 is None else t3 - t1}


def _noise(summary: dict[str, Any], noise: dict[str, Any]) -> dict[str, Any]:
    """The seed noise and the spread divided by it (None where either is missing or the noise is 0)."""
    std = noise.get("seed_std")

    def ratio(spread: float | None) -> float | None:
        return spread / std if spread is not None and std else None

    return {"seed_std": std, "iqr_over_seed": ratio(summary["iqr"]), "gap_over_seed": ratio(summary["gap"]),
            "repeats": noise.get("configs", []), "repeat_seeds": noise.get("seeds", [])}


def _importances(study: Any) -> dict[str, Any]:
    """{"importances": fANOVA importances of the params that vary, "importance_note": why there are none}."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return {"importances": {}, "importance_note": f"not shown: {len(complete)} complete trials, fANOVA needs "
                f"at least {MIN_IMPORTANCE_TRIALS} to rank more than noise"}
    names = {name for t in complete for name in t.params}
    varying = sorted(n for n in names if len({repr(t.params.get(n)) for t in complete}) > 1)
    if not varying:
        return {"importances": {}, "importance_note": "not shown: no hyperparameter varies"}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # seeded: the report must be reproducible
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varying)
    except (ValueError, RuntimeError) as exc:  # e.g. a conditional param missing from some trials
        log.info("no importances for %s: %s", study.study_name, exc)
        return {"importances": {}, "importance_note": f"not computable: {exc}"}
    return {"importances": {name: float(value) for name, value in found.items()}, "importance_note": ""}


def rank_strategies(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per strategy, least sensitive first (smallest IQR), with its rank by IQR, by gap and by best
    objective (validation), and the test metric of that best trial beside it."""
    names = list(summaries)
    maximize = all(summaries[n]["direction"] == "maximize" for n in names)
    ranks = {"rank_iqr": _ranks(names, lambda n: summaries[n]["iqr"], descending=False),
             "rank_gap": _ranks(names, lambda n: summaries[n]["gap"], descending=False),
             "rank_best": _ranks(names, lambda n: summaries[n]["best"], descending=maximize)}
    rows = [{"strategy": n, **{k: summaries[n].get(k) for k in _NUMBERS}, **{k: r[n] for k, r in ranks.items()}}
            for n in names]
    return sorted(rows, key=lambda row: (row["rank_iqr"] is None, row["rank_iqr"] or 0))


_NUMBERS = ("best", "median", "worst", "q1", "q3", "iqr", "gap", "seed_std", "iqr_over_seed", "iqr_over_seed_lo",
            "iqr_over_seed_hi", "gap_over_seed",
            "test_best", "test_median", "n_complete", "n_pruned", "n_failed", "n_retried")


def _ranks(names: list[str], key: Callable[[str], float | None], descending: bool) -> dict[str, int | None]:
    """1 = first; strategies without a value (no finished trial) get None."""
    ordered = sorted((n for n in names if key(n) is not None), key=key, reverse=descending)
    return {n: (ordered.index(n) + 1 if n in ordered else None) for n in names}


def write_report(summaries: dict[str, dict[str, Any]], studies: dict[str, Any], out_dir: Path,
                 command: str | None = None) -> Path:
    """Write `sensitivity.md`, `sensitivity.csv` (the cross-strategy ranking), `sensitivity-trials-NAME.csv` and
    `figures/sensitivity-NAME.png` (objective against each hyperparameter) into `out_dir`, each file atomically.
    `command`: the command line that produced the studies, quoted in the report. Returns the Markdown path."""
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    ranking = rank_strategies(summaries)
    _write_atomic(out_dir / "sensitivity.csv", _csv_text(ranking).encode())
    sections = []
    for name, summary in summaries.items():
        _write_atomic(out_dir / f"sensitivity-trials-{name}.csv", _csv_text(_trial_rows(studies[name])).encode())
        figure = plot_study(name, studies[name], summary)
        if figure is not None:
            save_figure(figure, out_dir / "figures" / f"sensitivity-{name}.png", formats=("png",), dpi=DPI)
        sections.append(_strategy_section(name, summary, has_figure=figure is not None))
    head = ["# Hyperparameter sensitivity", ""]
    if command:
        head += [f"Made by `{command}`.", ""]
    text = "\n".join([*head, *_ranking_section(ranking), *sections])
    path = out_dir / "sensitivity.md"
    _write_atomic(path, text.encode())
    return path


def _ranking_section(ranking: list[dict[str, Any]]) -> list[str]:
    lines = ["## Ranking", "", "On the validation objective. Less sensitive = smaller interquartile range (IQR) over "
             "the trials; gap = worst-to-best; ÷ seed = in units of the seed noise (std over repeated seeds, where "
             "the study was repeated; its interval resamples the trials and each repeated configuration's seeds, so "
             "two strategies' sensitivities differ only where their intervals do not overlap). Test = the test "
             "metric of the best-by-validation trial (reported, never "
             "chosen on).", "",
             "| strategy | rank by IQR | IQR | IQR ÷ seed [95 % bootstrap] | rank by gap | gap | gap ÷ seed | rank by "
             "best | best | test at best | median | complete | pruned |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in ranking:
        ratio = _fmt(r["iqr_over_seed"]) + (f" [{_fmt(r['iqr_over_seed_lo'])}, {_fmt(r['iqr_over_seed_hi'])}]"
                                            if r.get("iqr_over_seed_lo") is not None else "")
        cells = [r["strategy"], _fmt(r["rank_iqr"]), _fmt(r["iqr"]), ratio,
                 *(_fmt(r[k]) for k in ("rank_gap", "gap", "gap_over_seed", "rank_best", "best", "test_best",
                                        "median")), r["n_complete"], r["n_pruned"]]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return [*lines, ""]


def _strategy_section(name: str, s: dict[str, Any], has_figure: bool) -> str:
    over = "complete and pruned trials (pruned ones at their last validation value)" if s["n_pruned"] else \
        "complete trials"
    lines = [f"## {name}", "",
             f"Study `{s['study']}`: {s['n_complete']} complete, {s['n_pruned']} pruned, {s['n_failed']} failed, "
             f"{s['n_retried']} retried after a worker died; objective `{s['metric']}` ({s['direction']}), test "
             f"metric `{s['test_metric'] or '-'}`.", "", f"Sampler: {s['sampler']}.", "", *_space_lines(s["grid"]),
             f"Spread over the {over}:", "",
             "| best | Q1 | median | Q3 | worst | IQR | gap | seed std | IQR ÷ seed | gap ÷ seed |",
             "|---|---|---|---|---|---|---|---|---|---|",
             "| " + " | ".join(_fmt(s[k]) for k in ("best", "q1", "median", "q3", "worst", "iqr", "gap", "seed_std",
                                                    "iqr_over_seed", "gap_over_seed")) + " |", "",
             f"Best trial (by validation): #{_fmt(s['best_trial'])}, "
             f"`{json.dumps(s['best_params'], sort_keys=True)}`; its test `{s['test_metric'] or '-'}` "
             f"{_fmt(s['test_best'])} (test median over the trials {_fmt(s['test_median'])}, IQR "
             f"{_fmt(s['test_iqr'])}).", "", *_repeat_lines(s), "### Importance (fANOVA)", ""]
    if s["importances"]:
        lines += ["| hyperparameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in s["importances"].items()]
    else:
        lines.append(s["importance_note"].capitalize() + ".")
    lines.append("")
    if has_figure:
        lines += [f"![{name}: objective against each hyperparameter](figures/sensitivity-{name}.png)", ""]
    lines += [f"All trials: [sensitivity-trials-{name}.csv](sensitivity-trials-{name}.csv)", ""]
    return "\n".join(lines)


def _repeat_lines(s: dict[str, Any]) -> list[str]:
    """The repeated configurations and their values over seeds, or that the study was not repeated."""
    if not s["repeats"]:
        return ["Seed noise: not measured (no --repeats), so the spread has no yardstick here.", ""]
    lines = [f"### Seed noise ({len(s['repeat_seeds'])} extra seeds: {', '.join(map(str, s['repeat_seeds']))})",
             "", "| configuration | trial | seeds | mean | std | values |", "|---|---|---|---|---|---|"]
    for r in s["repeats"]:
        values = ", ".join(_fmt(v) for v in r["values"])
        lines.append(f"| {r['role']} | #{r['trial']} | {r['n']} | {_fmt(r['mean'])} | {_fmt(r['std'])} | {values} |")
    return [*lines, ""]


def _space_lines(grid: dict[str, dict[str, list]] | None) -> list[str]:
    """The grid a --grid study evaluated (a reduced one exactly); nothing for a sampled design."""
    if grid is None:
        return []
    values = {name: v for part in grid.values() for name, v in part.items()}
    shown = " × ".join(f"{name} ∈ {{{', '.join(map(str, v))}}}" for name, v in values.items())
    return [f"Grid: {shown}.", ""]


def _trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial: number, state (pruned and surplus marked), value, its params and the metrics it
    reported (the test ones included)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = "SURPLUS" if t.user_attrs.get(SURPLUS_ATTR) else t.state.name
        metrics = {k: v for k, v in t.user_attrs.items() if not k.startswith("tempbench.")}
        rows.append({"number": t.number, "state": state, "value": t.value, "retry_of":
                     t.system_attrs.get("failed_trial"), **t.params, **metrics})
    return rows


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
