"""The figure of a sensitivity report: the validation objective against each hyperparameter, one panel each;
complete trials as dots, pruned ones as grey crosses at their last reported value, the best as a star."""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from tempbench.figures import offscreen_figure

DPI = 110  # sensitivity.md shows it inline: a 4.2 × 3.4 in panel is then ~460 × 370 px, about a page's width / 2


def plot_study(name: str, study: Any, summary: dict[str, Any]) -> Any | None:
    """The figure (a matplotlib Figure, off pyplot) of one scatter per hyperparameter: the study's objective
    (`summary["metric"]`) against the value each trial used, pruned trials as grey crosses, the best trial
    (`summary["best_trial"]`) as a star; None when no trial has a parameter. Write it with
    `tempbench.figures.save_figure(fig, path, formats=("png",), dpi=DPI)`."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    params = sorted({p for t in trials for p in t.params})
    if not params:
        return None
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    fig = offscreen_figure(4.2 * cols, 3.4 * rows)  # a study may run in a notebook: pyplot's backend is left alone
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, param in zip(axes, params, strict=False):
        _scatter_param(ax, trials, param, summary)
    for ax in axes[len(params):]:
        ax.set_visible(False)
    fig.suptitle(f"{name}: {summary['metric']} over {summary['n_complete']} complete trials")
    return fig


def _scatter_param(ax: Any, trials: list, param: str, summary: dict[str, Any]) -> None:
    """One panel: objective against `param`; pruned trials drawn first, so complete ones sit on top of them."""
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
