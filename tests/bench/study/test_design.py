"""What makes a study's numbers trustworthy, with fake trial functions: the Sobol design (trial k = point k, the
same for every worker), the budget guard that settles races, repeats over seeds next to the spread, the validation
value Optuna stores, progress lines, Ctrl-C, storage URLs, MLflow names and pruned runs."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState
from scipy.stats import qmc

from tempbench.study.repeats import choose_configs, run_repeats
from tempbench.study.report import summarize_study, write_report
from tempbench.study.samplers import SobolSampler
from tempbench.study.sensitivity import counts, make_job, run_job, run_study
from tempbench.study.storage import redact, resolve_storage, with_driver
from tempbench.study.trial import TrialTracker, trial_run_name
from tempbench.study.workers import Budget, ProgressLine
from tempbench.tracking import NullTracker, RunHandle

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")


def noisy_objective(strategy: str, params: dict, reporter) -> dict:
    """Validation peaks at τ = 0.2; the seed moves it by ±0.5; the test metric is another number."""
    tau, seed = params["strategy"]["tau"], params.get("seed", 0)
    val = 80 - 10 * (math.log(tau) - math.log(0.2)) ** 2 + 0.5 * math.sin(7 * seed + tau)
    return {"objective": val, "val_knn200_top1": val, "knn200_top1": val - 3.0}


def kwargs(tmp_path, **overrides) -> dict:
    return {"n_trials": 8, "grid": False, "storage": None, "study_name": "s", "out_dir": tmp_path,
            "metric": "val_knn200_top1", "test_metric": "knn200_top1", **overrides}


def test_trial_k_is_sobol_point_k_from_the_first_trial(tmp_path):
    study = run_study("fixed", noisy_objective, **kwargs(tmp_path))
    low, high = math.log(0.01), math.log(1.0)  # fixed's τ: log-uniform on [0.01, 1]
    points = qmc.Sobol(1, scramble=True, seed=0).random(8)[:, 0]
    expected = [math.exp(low + p * (high - low)) for p in points]
    assert [t.params["tau"] for t in study.trials] == pytest.approx(expected)
    assert len({t.params["tau"] for t in study.trials}) == 8


def test_optuna_stores_the_validation_metric_never_the_test_one(tmp_path):
    study = run_study("fixed", noisy_objective, **kwargs(tmp_path))
    assert all(t.value == t.user_attrs["val_knn200_top1"] == t.user_attrs["knn200_top1"] + 3 for t in study.trials)
    summary = summarize_study(study)
    best = max(study.trials, key=lambda t: t.value)
    assert summary["best_trial"] == best.number and summary["test_best"] == best.user_attrs["knn200_top1"]
    assert study.metric_names == ["val_knn200_top1"]


def test_tune_is_tpe_with_the_median_pruner(tmp_path):
    job = make_job("fixed", noisy_objective, **kwargs(tmp_path, goal="tune"))
    assert job.prune and job.attrs["sampler"].startswith("TPESampler") and "MedianPruner" in job.attrs["sampler"]
    with pytest.raises(ValueError, match="grid is a sensitivity design"):
        make_job("fixed", noisy_objective, **kwargs(tmp_path, goal="tune", grid=True))


def test_repeats_measure_seed_noise_next_to_the_spread(tmp_path):
    job = make_job("fixed", noisy_objective, **kwargs(tmp_path))
    study = run_job(job)
    chosen = choose_configs(study, 3)
    ranked = sorted(study.trials, key=lambda t: t.value, reverse=True)
    assert chosen["best"] == ranked[0].number and chosen["worst"] == ranked[-1].number
    repeated = run_repeats(job, study, 3, seeds=[1, 2])
    assert counts(repeated)["complete"] == 6 and {t.params["seed"] for t in repeated.trials} == {1, 2}
    assert all(t.user_attrs["tempbench.hparams"]["strategy"] == study.trials[t.params["source"]].params
               for t in repeated.trials)
    summary = summarize_study(study, repeated)
    assert 0 < summary["seed_std"] < 1 and summary["iqr_over_seed"] == pytest.approx(summary["iqr"] /
                                                                                    summary["seed_std"])
    assert [r["n"] for r in summary["repeats"]] == [3, 3, 3]
    text = write_report({"fixed": summary}, {"fixed": study}, tmp_path).read_text()
    assert "### Seed noise (2 extra seeds: 1, 2)" in text and "IQR ÷ seed" in text
    again = run_repeats(job, study, 3, seeds=[1, 2])  # resumed: nothing new
    assert len(again.trials) == 6


def test_a_trial_created_beyond_the_budget_is_surplus_and_not_run(tmp_path):
    study = optuna.create_study()
    for _ in range(3):
        study.ask()  # three RUNNING trials hold a budget of 3
    late = study.ask()
    assert "trials of the budget are taken" in Budget(3).surplus_reason(late)
    assert Budget(4).surplus_reason(late) == ""
    grid = optuna.create_study(sampler=optuna.samplers.GridSampler({"x": [1, 2]}, seed=0))
    first = grid.ask()
    twin = grid.ask()
    grid._storage.set_trial_system_attr(twin._trial_id, "grid_id", grid.trials[first.number].system_attrs["grid_id"])
    assert "grid point" in Budget(5).surplus_reason(twin)


def test_ctrl_c_fails_the_running_trial_and_reaches_the_caller(tmp_path):
    def interrupted(strategy, params, reporter):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study("fixed", interrupted, **kwargs(tmp_path, n_trials=2))
    study = optuna.load_study(study_name="s", storage=resolve_storage(None, tmp_path))
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_one_progress_line_per_trial_with_values_params_and_eta(tmp_path, capsys):
    run_study("fixed", noisy_objective, **kwargs(tmp_path, n_trials=3))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("s trial")]
    assert len(lines) == 3
    assert lines[0].startswith("s trial 0 complete (1/3): val_knn200_top1 ") and ", test knn200_top1 " in lines[0]
    assert "tau=" in lines[0] and "ETA " in lines[0] and lines[-1].endswith("ETA done")
    assert ProgressLine(3, "m", None).n_trials == 3


def test_postgresql_urls_name_the_installed_driver():
    pytest.importorskip("psycopg")
    assert with_driver("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert with_driver("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert with_driver("sqlite:///x.db") == "sqlite:///x.db"
    assert redact("postgresql+psycopg://bench:s3cret@db/o") == "postgresql+psycopg://bench:***@db/o"


class Reporter:
    study_name, trial_number = "iso-lt", 7


class RecordingTracker(NullTracker):
    def __init__(self) -> None:
        self.calls: list = []

    def start_run(self, name, params, *, parent=None, tags=None, key=None):
        self.calls.append(("start", name, dict(tags or {})))
        return RunHandle(name, "id")

    def set_tags(self, run, tags):
        self.calls.append(("tags", dict(tags)))

    def end_run(self, run, status="FINISHED"):
        self.calls.append(("end", status))


def test_trial_runs_are_named_and_a_pruned_one_ends_killed_not_failed():
    assert trial_run_name(Reporter(), {"strategy": {"tau": 0.23456}, "optim": {"lr": 0.1}, "seed": 2}) == \
        "iso-lt #7 tau=0.235 lr=0.1 seed=2"
    recording = RecordingTracker()
    tracker = TrialTracker(recording, Reporter(), "iso-lt #7 tau=0.2")
    run = tracker.start_run("ignored", {})
    tracker.pruned = True
    tracker.end_run(run, "FAILED")  # what the runner does on the pruner's exception
    assert recording.calls == [("start", "iso-lt #7 tau=0.2", {"optuna.study": "iso-lt", "optuna.trial": "7"}),
                               ("tags", {"tempbench.trial_state": "PRUNED"}), ("end", "KILLED")]


def test_sobol_sampler_keeps_optunas_qmc_class():
    space = {"tau": optuna.distributions.FloatDistribution(0.05, 1.0, log=True)}
    assert isinstance(SobolSampler(space, seed=0), optuna.samplers.QMCSampler)
