"""Sensitivity studies with fake trial functions (no training): design, budget, grid, workers, resume, pruning,
repeats, report, CLI."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from tempbench.cli import main
from tempbench.study.report import rank_strategies, summarize_study, write_report
from tempbench.study.sensitivity import WORKER_ATTR, Reporter, counts, open_storage, resolve_storage, run_study

pytestmark = [pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"),
              pytest.mark.usefixtures("quick_probe")]  # the plumbing is under test here, not the probe

CALLS: list[float] = []  # taus seen by `smooth_objective` in this process
ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


@pytest.fixture
def spawnable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawned workers unpickle the trial functions of this module by name, so they need the repository root on the
    sys.path they copy from this process (pytest's importlib mode leaves it off)."""
    monkeypatch.syspath_prepend(str(ROOT))


def smooth_objective(strategy: str, params: dict, reporter: Reporter) -> dict:
    """Peaks at τ = 0.2, plus a little noise from the trial number; reports a rising curve."""
    tau = params["strategy"]["tau"]
    final = 0.9 - 0.1 * (math.log(tau) - math.log(0.2)) ** 2 + 0.01 * math.sin(reporter.trial_number)
    CALLS.append(tau)
    for epoch in range(3):
        reporter.report(epoch, final * (epoch + 1) / 3)
    return {"objective": final, "linear_top1": final - 0.05, "device": "cpu"}


def slow_objective(strategy: str, params: dict, reporter: Reporter) -> float:
    time.sleep(0.3)  # long enough that both workers get trials
    return params["strategy"]["tau"]


def bad_curve_on_odd_trials(strategy: str, params: dict, reporter: Reporter) -> float:
    value = 0.1 if reporter.trial_number % 2 else 0.9
    for epoch in range(4):
        reporter.report(epoch, value)
    return value


def nan_on_first_trial(strategy: str, params: dict, reporter: Reporter) -> float:
    return float("nan") if reporter.trial_number == 0 else 0.5


def study_kwargs(tmp_path, **overrides) -> dict:
    return {"n_trials": 4, "grid": False, "storage": None, "study_name": None, "out_dir": tmp_path, **overrides}


def numbers(study, *states) -> list[int]:
    return sorted(t.number for t in study.get_trials(states=states or None))


def test_study_completes_and_report_has_every_section(tmp_path):
    study = run_study("fixed", smooth_objective, **study_kwargs(tmp_path, n_trials=8, test_metric="linear_top1"))
    assert numbers(study, TrialState.COMPLETE) == list(range(8)) == numbers(study)
    summary = summarize_study(study)
    assert summary["n_complete"] == 8 and summary["n_pruned"] == 0 and summary["strategy"] == "fixed"
    assert summary["sampler"].startswith("QMCSampler (Sobol, scrambled, seed 0") and "no pruning" in summary["sampler"]
    assert summary["test_best"] == pytest.approx(summary["best"] - 0.05) and summary["seed_std"] is None
    assert summary["worst"] <= summary["q1"] <= summary["median"] <= summary["q3"] <= summary["best"]
    assert summary["iqr"] == pytest.approx(summary["q3"] - summary["q1"])
    assert summary["gap"] == pytest.approx(summary["best"] - summary["worst"])
    assert set(summary["importances"]) == {"tau"}
    assert set(summary["best_params"]) == {"strategy", "optim"} and "tau" in summary["best_params"]["strategy"]
    best = study.trials[summary["best_trial"]]
    assert best.user_attrs["linear_top1"] == pytest.approx(best.value - 0.05) and best.user_attrs["device"] == "cpu"
    other = dict(summary, iqr=summary["iqr"] + 1, gap=summary["gap"] + 1, best=summary["best"] - 1)

    report = write_report({"fixed": summary, "other": other}, {"fixed": study, "other": study}, tmp_path,
                          command="tempbench sensitivity --strategy fixed")
    text = report.read_text()
    for section in ("# Hyperparameter sensitivity", "## Ranking", "## fixed", "## other", "### Importance",
                    "figures/sensitivity-fixed.png", "sensitivity-trials-fixed.csv", "tempbench sensitivity",
                    "Sampler: QMCSampler (Sobol", "its test `linear_top1`", "Seed noise: not measured"):
        assert section in text, section
    assert (tmp_path / "figures" / "sensitivity-fixed.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "sensitivity.csv").read_text().splitlines()[1].startswith("fixed,")
    assert len((tmp_path / "sensitivity-trials-fixed.csv").read_text().splitlines()) == 9
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temp files left by the atomic writes


def test_ranking_orders_by_iqr_gap_and_best():
    base = {"median": 0, "worst": 0, "q1": 0, "q3": 0, "n_complete": 3, "n_pruned": 0, "n_failed": 0,
            "direction": "maximize", "n_retried": 0}
    rows = rank_strategies({"a": {**base, "iqr": 0.3, "gap": 0.1, "best": 0.9},
                            "b": {**base, "iqr": 0.1, "gap": 0.5, "best": 0.8},
                            "c": {**base, "iqr": None, "gap": None, "best": None}})
    assert [r["strategy"] for r in rows] == ["b", "a", "c"]
    assert [(r["rank_iqr"], r["rank_gap"], r["rank_best"]) for r in rows] == [(1, 2, 2), (2, 1, 1), (None,) * 3]


def test_summary_of_a_study_without_complete_trials():
    summary = summarize_study(optuna.create_study(direction="maximize"))
    assert summary["n_complete"] == 0 and summary["best"] is None and summary["importances"] == {}
    assert "needs at least 8" in summary["importance_note"]


def test_grid_runs_exactly_the_grid(tmp_path):
    CALLS.clear()
    study = run_study("fixed", smooth_objective, **study_kwargs(tmp_path, n_trials=None, grid=True))
    assert sorted(CALLS) == [0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
    assert numbers(study, TrialState.COMPLETE) == list(range(7)) == numbers(study)
    small = run_study("fixed", smooth_objective, **study_kwargs(tmp_path, n_trials=3, grid=True, study_name="g3"))
    assert len({t.params["tau"] for t in small.trials}) == 3 == len(small.trials)


def test_two_workers_share_the_budget_exactly(tmp_path, spawnable):
    study = run_study("fixed", slow_objective, **study_kwargs(tmp_path, n_trials=6, workers=2))
    assert len(numbers(study, TrialState.COMPLETE)) == 6 and counts(study)["failed"] == 0
    assert len({t.user_attrs[WORKER_ATTR] for t in study.trials}) == 2
    assert (tmp_path / "optuna-journal.log").is_file()


def test_rerun_resumes_instead_of_restarting(tmp_path):
    run_study("fixed", smooth_objective, **study_kwargs(tmp_path))
    CALLS.clear()
    again = run_study("fixed", smooth_objective, **study_kwargs(tmp_path))
    assert CALLS == [] and numbers(again) == [0, 1, 2, 3]
    more = run_study("fixed", smooth_objective, **study_kwargs(tmp_path, n_trials=6))
    assert len(CALLS) == 2 and numbers(more, TrialState.COMPLETE, TrialState.PRUNED) == list(range(6)) == numbers(more)


def test_resume_on_a_journal_fails_the_trial_of_a_dead_local_worker_and_retries_it(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    storage = resolve_storage(None, tmp_path, workers=2)
    study = optuna.create_study(storage=open_storage(storage), study_name="fixed-custom", direction="maximize")
    stale = study.ask({"tau": optuna.distributions.FloatDistribution(0.01, 1.0, log=True)})
    stale.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{dead.pid}")
    resumed = run_study("fixed", smooth_objective, **study_kwargs(tmp_path, n_trials=2, storage=storage))
    assert [t.state for t in resumed.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert resumed.trials[1].system_attrs["failed_trial"] == 0  # the retry, with the dead trial's τ
    assert resumed.trials[1].params == stale.params and counts(resumed)["retried"] == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")  # our ask
def test_resume_on_an_rdb_fails_a_trial_without_heartbeat_and_retries_it(tmp_path):
    storage = resolve_storage(None, tmp_path)
    study = optuna.create_study(storage=open_storage(storage, heartbeat=1), study_name="fixed-custom",
                                direction="maximize")
    stale = study.ask({"tau": optuna.distributions.FloatDistribution(0.01, 1.0, log=True)})
    study._storage.record_heartbeat(stale._trial_id)  # then its worker "dies": no heartbeat for > 2 s
    # SQLite stamps heartbeats to the whole second, so only ≥ 3 s of silence is surely past the 2 s grace period
    time.sleep(3.1)
    resumed = run_study("fixed", smooth_objective, **study_kwargs(tmp_path, n_trials=2, heartbeat=1))
    assert [t.state for t in resumed.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert resumed.trials[1].params == stale.params


def test_reporter_raises_trial_pruned_on_a_bad_curve():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    good = study.ask()
    for epoch in range(3):
        Reporter(good).report(epoch, 0.9)
    study.tell(good, 0.9)
    bad = study.ask()
    with pytest.raises(optuna.TrialPruned, match="epoch 0"):
        Reporter(bad).report(0, 0.1)


def test_pruned_trials_count_towards_the_budget(tmp_path):
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = run_study("fixed", bad_curve_on_odd_trials, **study_kwargs(tmp_path, n_trials=6, pruner=pruner))
    assert numbers(study, TrialState.PRUNED) == [1, 3, 5] and numbers(study, TrialState.COMPLETE) == [0, 2, 4]
    summary = summarize_study(study)
    assert summary["n_pruned"] == 3 and summary["worst"] == pytest.approx(0.1)  # in the spread at the last value
    assert study.trials[1].value == pytest.approx(0.1)


def test_nan_objective_fails_the_trial_without_using_the_budget(tmp_path):
    study = run_study("fixed", nan_on_first_trial, **study_kwargs(tmp_path, n_trials=2))
    assert numbers(study, TrialState.FAIL) == [0] and numbers(study, TrialState.COMPLETE) == [1, 2]


def test_extra_space_params_reach_the_trial_fn_separately(tmp_path):
    seen = []
    run_study("fixed", lambda s, p, r: seen.append(p) or 0.0, **study_kwargs(
        tmp_path, n_trials=2, extra_space=lambda trial: {"lr": trial.suggest_float("lr", 0.01, 1.0, log=True)}))
    assert all(set(p["strategy"]) == {"tau"} and set(p["optim"]) == {"lr"} for p in seen)


@pytest.mark.parametrize(("storage", "message"), [("notadb://x", "cannot open Optuna storage"),
                                                   ("no-such-thing", "bad Optuna storage"),
                                                   ("sqlite:////no/such/dir/o.db", "cannot open Optuna storage")])
def test_bad_storage_is_a_clear_error_before_any_trial(tmp_path, storage, message):
    CALLS.clear()
    with pytest.raises(ValueError, match=message):
        run_study("fixed", smooth_objective, **study_kwargs(tmp_path, storage=storage))
    assert CALLS == []


def test_workers_need_a_picklable_trial_fn(tmp_path):
    with pytest.raises(ValueError, match="picklable"):
        run_study("fixed", lambda s, p, r: 0.0, **study_kwargs(tmp_path, workers=2))
    assert not (tmp_path / "optuna-journal.log").exists()


def test_reports_never_show_a_storage_password():
    from tempbench.cli.sensitivity import redact

    assert redact("postgresql://bench:s3cret@db:5432/optuna") == "postgresql://bench:***@db:5432/optuna"
    assert redact("sqlite:////tmp/o.db") == "sqlite:////tmp/o.db"


def test_unknown_strategy_lists_the_registered_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown strategy 'nope'.*fixed"):
        run_study("nope", smooth_objective, **study_kwargs(tmp_path))


def test_resuming_with_another_strategy_or_mode_is_refused(tmp_path):
    run_study("fixed", smooth_objective, **study_kwargs(tmp_path, n_trials=1, study_name="s"))
    with pytest.raises(ValueError, match="pass another study name"):
        run_study("fixed", smooth_objective, **study_kwargs(tmp_path, n_trials=1, study_name="s", grid=True))
    with pytest.raises(ValueError, match="pass another study name"):
        run_study("fixed", smooth_objective, **study_kwargs(tmp_path, n_trials=1, study_name="s", goal="tune"))


def test_journal_storage_spec_opens():
    assert type(open_storage(resolve_storage(None, __import__("pathlib").Path("/tmp"), workers=2))).__name__ \
        == "JournalStorage"


# ---- the CLI, against a fake training ------------------------------------------------------------------------------
def fake_train(config, *, tracker, tracker_parent, on_epoch):
    """What `tempbench.study.trial` calls, training nothing: a smooth function of τ."""
    run = tracker.start_run(f"{config.strategy}-trial", config.to_dict(), parent=tracker_parent)
    acc = 0.9 - abs(math.log(config.hyperparameters["tau"] / 0.2)) / 10 + 0.002 * math.sin(config.seed)
    for epoch in range(config.epochs):
        tracker.log_metrics(run, {"knn_monitor": acc * (epoch + 1) / config.epochs}, step=epoch)
        on_epoch(epoch, {"knn_monitor": acc * (epoch + 1) / config.epochs})
    tracker.end_run(run)
    return {"val_knn200_top1": acc, "knn200_top1": acc + 0.01, "linear_top1": acc - 0.1, "strategy": config.strategy}


def use_fake_train(monkeypatch) -> None:
    monkeypatch.setattr("tempbench.study.trial.train", fake_train)


def run_cli(argv: list[str]) -> int:
    return main(["sensitivity", *argv])


def test_cli_runs_studies_nested_in_mlflow_and_prints_json(tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    from tempbench.tracking import PARENT_RUN_TAG, local_store_uri

    use_fake_train(monkeypatch)
    out = tmp_path / "out"
    assert run_cli(["--strategy", "fixed,sogclr", "--dataset", "sklearn:digits", "--trials", "3", "--epochs", "2",
                    "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["studies"]) == {"fixed", "sogclr"}
    assert result["studies"]["fixed"]["study"] == "fixed-sklearn-digits"
    assert result["studies"]["fixed"]["n_complete"] == 3 and (out / "sensitivity.md").is_file()
    client = MlflowClient(local_store_uri(out))
    runs = client.search_runs([client.get_experiment_by_name("tempbench").experiment_id])
    parents = {r.info.run_id: r for r in runs if PARENT_RUN_TAG not in r.data.tags}
    children = [r for r in runs if PARENT_RUN_TAG in r.data.tags]
    assert len(parents) == 2 and len(children) == 6
    assert all(c.data.tags[PARENT_RUN_TAG] in parents and "optuna.trial" in c.data.tags for c in children)
    assert {c.data.params["dataset"] for c in children} == {"sklearn:digits"}
    assert {c.data.params["strategy"] for c in children} == {"fixed", "sogclr"} and "hyperparameters.tau" in \
        children[0].data.params


def test_cli_rejects_bad_options_before_work(tmp_path, monkeypatch):
    use_fake_train(monkeypatch)
    base = ["--dataset", "sklearn:digits", "--out", str(tmp_path), "--no-tracking"]
    for argv in (["--strategy", "fixed,nope", *base],
                 ["--strategy", "fixed", "--grid", "--lr-range", "0.1", "1", *base],
                 ["--strategy", "fixed", "--storage", "notadb://x", *base],
                 ["--strategy", "fixed", "--metric", "knn200_top1", *base]):
        assert run_cli(argv) == 2
    assert list(tmp_path.iterdir()) == []


def test_cli_repeats_give_the_seed_noise_beside_the_spread(tmp_path, monkeypatch, capsys):
    use_fake_train(monkeypatch)
    out = tmp_path / "out"
    assert run_cli(["--strategy", "fixed", "--dataset", "sklearn:digits", "--trials", "4", "--epochs", "1",
                    "--repeats", "2", "--repeat-seeds", "2", "--out", str(out), "--no-tracking", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["studies"]["fixed"]
    assert summary["seed_std"] > 0 and summary["iqr_over_seed"] > 0 and len(summary["repeats"]) == 2
    assert summary["test_metric"] == "knn200_top1" and summary["test_best"] is not None
    text = (out / "sensitivity.md").read_text()
    assert "### Seed noise (2 extra seeds: 1, 2)" in text and "--repeats 2 --repeat-seeds 2" in text
    repeats = optuna.load_study(study_name="fixed-sklearn-digits-repeats", storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(repeats.trials) == 4 and {t.params["seed"] for t in repeats.trials} == {1, 2}
