"""Seed noise next to the spread: re-run a study's best, median and worst configurations (by the validation
objective) over extra seeds, so the report can say whether the spread across the search space is larger than what
the seed alone moves.

    repeated = run_repeats(job, study, configs=3, seeds=[1, 2, 3])     # a grid study "NAME-repeats"
    noise = seed_noise(study, repeated)                                  # {"seed_std": ..., "configs": [...]}
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import TrialState

from .sensitivity import HPARAMS_ATTR, StudyJob, run_job

# the configurations a repeats study can re-run, in report order; --repeats k takes best, then worst, then median
CHOSEN = ("best", "median", "worst")


def check_repeats(k: int) -> None:
    """ValueError unless 1 ≤ k ≤ 3, the number of configurations `--repeats` may re-run."""
    if not 1 <= k <= len(CHOSEN):
        raise ValueError(f"--repeats takes 1 (best), 2 (best, worst) or 3 (best, median, worst), got {k}")


def choose_configs(study: Any, k: int) -> dict[str, int]:
    """{"best": trial number, "worst": ..., "median": ...} of the first `k` of CHOSEN among COMPLETE trials."""
    check_repeats(k)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: t.value, reverse=study.direction == StudyDirection.MAXIMIZE)
    if not ranked:
        return {}
    # the lower median for an even count: always a real trial, never an average of two configurations
    picks = {"best": ranked[0], "worst": ranked[-1], "median": ranked[(len(ranked) - 1) // 2]}
    wanted = ("best", "worst", "median")[:k]
    return {role: picks[role].number for role in CHOSEN if role in wanted}


def run_repeats(job: StudyJob, study: Any, configs: int, seeds: list[int], workers: int = 1) -> Any | None:
    """Run (or resume) the repeats study of `study`: each chosen configuration at each of `seeds`, no pruning, one
    grid point per (configuration, seed). None when the study has no complete trial yet."""
    chosen = choose_configs(study, configs)
    if not chosen:
        return None
    sources = {n: study.trials[n].user_attrs[HPARAMS_ATTR] for n in sorted(set(chosen.values()))}
    grid = {"repeat": {"source": sorted(sources), "seed": list(seeds)}}
    repeat = dataclasses.replace(job, study_name=f"{job.study_name}-repeats", n_trials=len(sources) * len(seeds),
                                 grid=grid, repeats=sources, goal="sensitivity", prune=False, pruner=None,
                                 space=None, extra_space=None, n_existing=0)
    repeat.attrs = {**job.attrs, "mode": "repeats", "grid": grid, "chosen": chosen,
                    "sampler": "GridSampler over (configuration, seed); no pruning"}
    return run_job(repeat, workers)


def seed_noise(study: Any, repeated: Any | None) -> dict[str, Any]:
    """Per repeated configuration its values over seeds (the original trial's and the repeats'), their std, and the
    pooled seed std (root mean of the per-configuration variances); {} without repeats."""
    if repeated is None:
        return {}
    chosen = repeated.user_attrs.get("tempbench.chosen", {})
    rows = []
    for role, number in chosen.items():
        values = [study.trials[number].value] + [t.value for t in repeated.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,)) if t.params.get("source") == number]
        rows.append({"role": role, "trial": number, "n": len(values), "mean": float(np.mean(values)),
                     "std": statistics.stdev(values) if len(values) > 1 else None, "values": values})
    variances = [r["std"] ** 2 for r in rows if r["std"] is not None]
    # pool variances, not stds (a mean of stds is biased low); each configuration weighs the same
    pooled = float(np.sqrt(np.mean(variances))) if variances else None
    return {"seed_std": pooled, "configs": rows, "seeds": repeated.user_attrs.get("tempbench.grid", {})
            .get("repeat", {}).get("seed", [])}
