"""A run end to end on digits-lt (CPU, 2 steps an epoch): a complete row, bit-exact kill-and-resume, the NaN guard,
the full training set, configs resolved once."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tempbench.config import RunConfig, resolve_run_config
from tempbench.perf.train import synthetic_dataset
from tempbench.strategies.fixed import Fixed
from tempbench.strategies.tau_uncertainty import TaU
from tempbench.train import NonFiniteLossError, run_id, train
from tempbench.train.checkpoint import load_checkpoint
from tempbench.train.threads import calibrated_threads
from tempbench.util import ArtifactWarning

# digits-lt: 588 training images, so batch 256 gives 2 steps an epoch
SMOKE = {"encoder": "small_cnn", "projector_hidden": 32, "projector_out": 16, "batch_size": 256, "epochs": 1,
         "device": "cpu", "progress": False, "lr": 0.1}


def smoke(strategy: str, hyperparameters: dict | None = None, **settings) -> RunConfig:
    return resolve_run_config(strategy, "digits-lt", settings={**SMOKE, **settings}, hyperparameters=hyperparameters)


ROW_KEYS = {"run_id", "strategy", "hyperparameters", "dataset", "long_tail", "class_counts", "lt_hash",
            "subset_seed", "num_train", "num_val", "seed", "encoder", "epochs", "batch_size", "knn200_top1",
            "knn20_top1", "knn1_top1", "knn10_top1", "recall_at_1", "linear_top1", "linear_class_avg",
            "fewshot_top1", "fullshot_top1", "linear_many", "linear_few", "linear_tail", "knn200_few", "tau_spearman",
            "tau_by_class", "time_data_s", "time_train_s", "time_eval_s", "device", "versions", "git_commit",
            "config_hash", "config", "final_loss", "per_class_linear", "linear_wd"}


def test_smoke_run_writes_a_complete_row_on_the_whole_training_set(tmp_path) -> None:
    row = train(smoke("isogclr"), out_dir=tmp_path)
    assert set(row) >= ROW_KEYS
    assert row["strategy"] == "isogclr" and row["dataset"] == "digits-lt"
    assert row["num_train"] == 588 and row["num_val"] == 0  # no held-out slice unless asked for
    counts = json.loads(row["class_counts"])
    assert counts == sorted(counts, reverse=True) and counts[0] > 5 * counts[-1]  # long-tailed, head first
    for key in ("knn200_top1", "knn20_top1", "linear_top1", "fewshot_top1", "fullshot_top1", "recall_at_1"):
        assert 0.0 <= row[key] <= 100.0, key
    assert math.isfinite(row["tau_spearman"])  # per-sample τ: analytics present
    assert len(json.loads(row["tau_by_class"])) == 10
    assert (tmp_path / "tau" / row["run_id"] / "tau_per_sample.csv").exists()
    assert json.loads(row["hyperparameters"])["rho"] == 0.4
    assert row["config_hash"] == smoke("isogclr", {"rho": 0.4}).hash()  # defaults spelled out: the same hash
    assert (tmp_path / "checkpoints" / f"{row['run_id']}.pt").exists()


@pytest.mark.slow  # a full training run
def test_a_global_strategy_row_has_no_tau_analytics() -> None:
    row = train(smoke("fixed"), out_dir=None)
    assert math.isnan(row["tau_spearman"]) and row["tau_by_class"] == ""


@pytest.mark.slow  # a full training run
def test_validation_slice_exists_only_when_asked_and_feeds_val_metrics() -> None:
    row = train(smoke("fixed", val_fraction=0.1, monitor_every=1))
    assert row["num_train"] + row["num_val"] == 588 and row["num_val"] > 0
    assert 0.0 <= row["val_knn200_top1"] <= 100.0 and 0.0 <= row["final_knn_monitor"] <= 100.0


class Killed(Exception):
    pass


@pytest.mark.slow  # three trainings; the 2-process resume (-m distributed) covers resume in CI
def test_kill_and_resume_is_bit_exact(tmp_path) -> None:
    # a fixed thread count: float reductions may differ between 1 and 2 threads, and `threads=0` chooses per run
    config = smoke("isogclr", epochs=3, checkpoint_every=1, threads=2)
    full = train(config, out_dir=tmp_path / "full")

    def kill_after_second_epoch(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(config, out_dir=tmp_path / "killed", on_epoch=kill_after_second_epoch)
    ckpt = tmp_path / "killed" / "checkpoints" / f"{run_id(config)}.pt"
    assert load_checkpoint(ckpt)["progress"]["epoch"] == 2
    resumed = train(config, out_dir=tmp_path / "killed", resume=ckpt)

    for key in ("final_loss", "knn200_top1", "knn20_top1", "linear_top1", "tau_by_class"):
        assert resumed[key] == full[key], key
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / f"{run_id(config)}.pt")
    b = load_checkpoint(ckpt)
    for part in ("model", "strategy"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)


@pytest.mark.slow  # a full training run
def test_resume_with_another_config_is_refused(tmp_path) -> None:
    config = smoke("fixed")
    train(config, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"different config \(differs in \['epochs'\]\)"):
        train(smoke("fixed", epochs=2), out_dir=tmp_path, resume=tmp_path / "checkpoints" / f"{run_id(config)}.pt")


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    original = Fixed.compute

    def poisoned(self, z1, z2, idx, clock):
        out = original(self, z1, z2, idx, clock)
        if clock.step >= 3:  # in the second epoch (2 steps per epoch)
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Fixed, "compute", poisoned)
    config = smoke("fixed", epochs=3, checkpoint_every=1, log_every=1)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 3 \(epoch 2\).*last good checkpoint"):
        train(config, out_dir=tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / f"{run_id(config)}.pt")["progress"]["epoch"] == 1


def test_batch_larger_than_the_training_set_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="batch_size 4096 exceeds"):
        train(smoke("fixed", batch_size=4096))


def test_thread_calibration_leaves_no_trace_in_the_model() -> None:
    """The automatic thread count times forward + backward passes in train mode: BatchNorm's running statistics must
    come back as they were, or `threads=0` and an explicit count would evaluate different models."""
    data = synthetic_dataset(64, image_size=8)
    config = resolve_run_config("fixed", "digits", settings={"projector_hidden": 16, "projector_out": 8})
    train = config.pairing.training_data(config, data, torch.device("cpu"))
    model = config.pairing.build_model(config, data, train, torch.device("cpu"), config.projector_out)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    try:
        x = config.pairing.calibration_input(train, data)
        assert calibrated_threads(model, x, rounds=1) >= 1
    finally:
        torch.set_num_threads(threads)
    after = model.state_dict()
    assert any("running_mean" in k for k in before)  # the encoder has BatchNorm statistics to protect
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.usefixtures("quick_probe")
def test_a_non_finite_tau_skips_the_tau_analytics_and_keeps_the_row(tmp_path, monkeypatch) -> None:
    """TaU's τ = t/σ(r) is inf once σ(r) underflows float32 (a trial of a digits-lt study did this): the run must
    still write its row, with the analytics skipped and a warning saying why."""
    def blown(self):
        tau = self.last_tau.clone()
        tau[:3] = float("inf")
        return tau

    monkeypatch.setattr(TaU, "temperatures", blown)
    with pytest.warns(ArtifactWarning, match="3 of 588 per-sample temperatures are not finite"):
        row = train(smoke("tau_uncertainty"), out_dir=tmp_path)
    assert math.isnan(row["tau_spearman"]) and row["tau_by_class"] == "" and row["knn200_top1"] >= 0
