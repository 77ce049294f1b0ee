"""`tempbench sensitivity` end to end with the real runner on digits (CPU, a few seconds per trial): a 4-trial study
with its report and nested MLflow runs, resume, a reduced grid, pruning through the kNN monitor, bad options."""

from __future__ import annotations

import json

import optuna
import pytest

from tempbench.cli import main
from tempbench.study.sensitivity import Reporter
from tempbench.study.trial import RunnerTrialFn
from tempbench.tracking import PARENT_RUN_TAG, local_store_uri

pytestmark = [pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"),
              pytest.mark.usefixtures("quick_probe")]  # the plumbing is under test here, not the probe

# digits-lt: 588 images, of which 10 % are held out for the validation metrics: batch 256 is 2 steps an epoch
TINY_RUN = {"projector_hidden": 32, "projector_out": 16, "batch_size": 256, "device": "cpu", "lr": 0.1}
TINY_SET = [part for key, value in TINY_RUN.items() for part in ("--set", f"{key}={json.dumps(value)}")]
SECTIONS = ("# Hyperparameter sensitivity", "Made by `tempbench sensitivity", "## Ranking", "## isogclr",
            "| best | Q1 | median | Q3 | worst | IQR | gap | seed std |", "### Importance (fANOVA)",
            "Sampler: QMCSampler (Sobol", "its test `knn200_top1`", "figures/sensitivity-isogclr.png",
            "sensitivity-trials-isogclr.csv")


def sensitivity(out, *extra: str) -> int:
    return main(["sensitivity", "--dataset", "digits-lt", "--epochs", "1", "--out", str(out), *TINY_SET, *extra])


@pytest.mark.slow  # four real trainings
def test_four_trial_study_on_digits_reports_tracks_and_resumes(tmp_path, capsys):
    from mlflow import MlflowClient

    out = tmp_path / "study"
    assert sensitivity(out, "--strategy", "isogclr", "--trials", "4", "--json") == 0
    summary = json.loads(capsys.readouterr().out)["studies"]["isogclr"]
    assert summary["n_complete"] == 4 and summary["metric"] == "val_knn200_top1"
    assert summary["worst"] <= summary["median"] <= summary["best"] <= 100.0
    assert summary["importances"] == {} and "at least 8" in summary["importance_note"]  # 4 trials: not shown
    assert summary["sampler"].startswith("QMCSampler (Sobol") and summary["test_metric"] == "knn200_top1"
    text = (out / "sensitivity.md").read_text()
    assert all(section in text for section in SECTIONS), [s for s in SECTIONS if s not in text]
    assert (out / "figures" / "sensitivity-isogclr.png").read_bytes().startswith(b"\x89PNG")

    client = MlflowClient(local_store_uri(out))
    runs = client.search_runs([client.get_experiment_by_name("tempbench").experiment_id])
    parents = [r for r in runs if PARENT_RUN_TAG not in r.data.tags]
    children = [r for r in runs if PARENT_RUN_TAG in r.data.tags]
    assert [p.info.run_name for p in parents] == ["sensitivity-isogclr-digits-lt"] and len(children) == 4
    assert {c.data.tags[PARENT_RUN_TAG] for c in children} == {parents[0].info.run_id}
    assert sorted(c.data.tags["optuna.trial"] for c in children) == ["0", "1", "2", "3"]
    assert {c.data.tags["tempbench.trial_state"] for c in children} == {"COMPLETE"}
    child = children[0]
    assert child.data.params["batch_size"] == "256" and "hyperparameters.rho" in child.data.params
    assert "train/knn_monitor" in child.data.metrics and "val/knn200_top1" in child.data.metrics
    assert "tau/tau_per_sample.csv" in {f.path for f in client.list_artifacts(child.info.run_id, "tau")}

    assert sensitivity(out, "--strategy", "isogclr", "--trials", "4", "--no-tracking") == 0  # resumes: no training
    study = optuna.load_study(study_name="isogclr-digits-lt", storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == 4 and study.metric_names == ["val_knn200_top1"]
    assert all(t.value == t.user_attrs["val_knn200_top1"] for t in study.trials)  # never the test metric
    assert "isogclr" in capsys.readouterr().out


@pytest.mark.slow  # two real trainings
def test_reduced_grid_runs_the_given_values_and_says_so(tmp_path, capsys):
    out = tmp_path / "grid"
    assert sensitivity(out, "--strategy", "fixed", "--grid", "--grid-values", "tau=0.1,0.5", "--no-tracking") == 0
    study = optuna.load_study(study_name="fixed-digits-lt", storage=f"sqlite:///{out / 'optuna.db'}")
    assert sorted(t.params["tau"] for t in study.trials) == [0.1, 0.5]
    text = (out / "sensitivity.md").read_text()
    assert "Grid: tau ∈ {0.1, 0.5}." in text and "--grid-values tau=0.1,0.5" in text


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_the_kNN_monitor_feeds_the_pruner(tmp_path):
    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    trial = study.ask()
    trial_fn = RunnerTrialFn(dataset="digits-lt", epochs=2, seed=0, metric="val_knn200_top1", out_dir=str(tmp_path),
                             tracking=False, tracking_uri=None,
                             run_settings={**TINY_RUN, "progress": False, "val_fraction": 0.1, "monitor_every": 1})
    with pytest.raises(optuna.TrialPruned, match="epoch 0"):
        trial_fn("fixed", {"strategy": {"tau": 0.2}, "optim": {}}, Reporter(trial))
    reported = study.trials[0].intermediate_values
    assert list(reported) == [0] and 0.0 <= reported[0] <= 100.0  # the monitor's kNN accuracy, in percent


@pytest.mark.parametrize(("extra", "message"), [
    (["--strategy", "fixed,nope"], "unknown strategy 'nope'"),
    (["--strategy", "fixed", "--storage", "notadb://x"], "cannot open Optuna storage"),
    (["--strategy", "fixed", "--storage", "no-such-thing"], "bad Optuna storage"),
    (["--strategy", "fixed", "--set", "tau=0.2"], "unknown run setting 'tau'"),
    (["--strategy", "fixed", "--set", "epochs=3", "--epochs", "2"], "disagree"),
    (["--strategy", "fixed", "--set", "seed=3"], "use --seed"),
    (["--strategy", "fixed", "--metric", "knn200_top1"], "use a val_ metric"),
    (["--strategy", "fixed", "--metric", "val_r_mean"], "is measured on image_text runs; digits-lt is views data"),
    (["--strategy", "fixed", "--set", "batch_size=big"], "batch_size must be int"),
    (["--strategy", "fixed", "--grid-values", "tau=0.1"], "add --grid"),
    (["--strategy", "fixed", "--grid", "--grid-values", "rho=0.1"], "matches none of the grids"),
])
def test_bad_options_are_one_clear_error_before_any_work(tmp_path, capsys, extra, message):
    assert sensitivity(tmp_path / "out", *extra, "--no-tracking") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
