"""The runner end to end on digits-lt (CPU, seconds): a complete row, bit-exact kill-and-resume, the NaN guard."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tempbench.checkpoint import load_checkpoint
from tempbench.config import RunConfig, make_run_config
from tempbench.runner import NonFiniteLossError, run_id, train
from tempbench.strategies.fixed import Fixed

TINY = {"dataset": "digits-lt", "encoder": "small_cnn", "projector_hidden": 32, "projector_out": 16,
        "batch_size": 64, "epochs": 2, "device": "cpu", "progress": False, "lr": 0.1}


def tiny(**overrides) -> RunConfig:
    return make_run_config(**{**TINY, **overrides})


ROW_KEYS = {"run_id", "strategy", "hparams", "dataset", "long_tail", "class_counts", "lt_hash", "seed", "encoder",
            "epochs", "batch_size", "knn200_top1", "knn20_top1", "recall_at_1", "recall_at_5", "recall_at_10",
            "linear_top1", "linear_many", "linear_medium", "linear_few", "linear_head", "linear_mid", "linear_tail",
            "knn200_few", "knn200_tail", "tau_spearman", "tau_by_class", "time_data_s", "time_train_s",
            "time_eval_s", "device", "versions", "git_commit", "config_hash", "final_loss", "per_class_linear"}


def test_two_epoch_run_on_digits_lt_writes_a_complete_row(tmp_path) -> None:
    row = train(tiny(strategy="isogclr"), out_dir=tmp_path)
    assert set(row) >= ROW_KEYS
    assert row["strategy"] == "isogclr" and row["dataset"] == "digits-lt"
    counts = json.loads(row["class_counts"])
    assert counts == sorted(counts, reverse=True) and counts[0] > 5 * counts[-1]  # long-tailed, head first
    for key in ("knn200_top1", "knn20_top1", "linear_top1", "recall_at_1"):
        assert 0.0 <= row[key] <= 100.0
    assert row["linear_top1"] > 30.0  # far above chance (10 %) after 2 epochs
    assert math.isfinite(row["tau_spearman"])  # per-sample τ: analytics present
    assert len(json.loads(row["tau_by_class"])) == 10
    assert (tmp_path / "tau" / row["run_id"] / "tau_per_sample.csv").exists()
    assert json.loads(row["hparams"])["rho"] == 0.4
    assert (tmp_path / "checkpoints" / f"{row['run_id']}.pt").exists()


def test_global_strategy_row_has_no_tau_analytics(tmp_path) -> None:
    row = train(tiny(strategy="fixed", epochs=1), out_dir=None)
    assert math.isnan(row["tau_spearman"]) and row["tau_by_class"] == ""


class Killed(Exception):
    pass


def test_kill_and_resume_is_bit_exact(tmp_path) -> None:
    config = tiny(strategy="isogclr", epochs=3, checkpoint_every=1)
    full = train(config, out_dir=tmp_path / "full")

    def kill_after_second_epoch(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(config, out_dir=tmp_path / "killed", on_epoch=kill_after_second_epoch)
    ckpt = tmp_path / "killed" / "checkpoints" / f"{run_id(config)}.pt"
    assert load_checkpoint(ckpt)["clock"]["epoch"] == 2
    resumed = train(config, out_dir=tmp_path / "killed", resume=ckpt)

    for key in ("final_loss", "knn200_top1", "knn20_top1", "linear_top1", "tau_by_class"):
        assert resumed[key] == full[key], key
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / f"{run_id(config)}.pt")
    b = load_checkpoint(ckpt)
    for part in ("model", "strategy"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)


def test_resume_with_another_config_is_refused(tmp_path) -> None:
    config = tiny(strategy="fixed", epochs=1)
    train(config, out_dir=tmp_path)
    with pytest.raises(ValueError, match="different config"):
        train(tiny(strategy="fixed", epochs=2), out_dir=tmp_path,
              resume=tmp_path / "checkpoints" / f"{run_id(config)}.pt")


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    original = Fixed.compute

    def poisoned(self, z1, z2, idx, step):
        out = original(self, z1, z2, idx, step)
        if step.step >= 13:  # in the second epoch (8 steps per epoch at batch 64)
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Fixed, "compute", poisoned)
    config = tiny(strategy="fixed", epochs=4, checkpoint_every=1, log_every=3)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 13 \(epoch 2\).*last good checkpoint"):
        train(config, out_dir=tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / f"{run_id(config)}.pt")["clock"]["epoch"] == 1


def test_batch_larger_than_the_training_set_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="batch_size 4096 exceeds"):
        train(tiny(strategy="fixed", batch_size=4096))


def test_strict_config() -> None:
    with pytest.raises(ValueError, match=r"unknown run setting\(s\) \['epoch'\]"):
        make_run_config(epoch=3)
    with pytest.raises(ValueError, match="epochs must be int"):
        make_run_config(epochs="3")
    with pytest.raises(ValueError, match="long_tail"):
        make_run_config(long_tail=0.0)
