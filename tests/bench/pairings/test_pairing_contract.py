"""The contract every registered pairing keeps, run over `list_pairings()` as the strategy contract runs over
`list_strategies()`: a new pairing is tested for free. Each pairing gets a tiny dataset of its kind (digits-lt for
views, a 24-image caption folder for image_text) and a one-step setup with the real recipe."""

from __future__ import annotations

import pickle

import pytest
import torch

from tempbench.config import resolve_run_config
from tempbench.eval import list_metrics
from tempbench.pairings import Pairing, get_pairing, list_pairings, register_pairing
from tempbench.train import build_setup, train_step

pytestmark = pytest.mark.usefixtures("quick_probe")
SMALL = {"epochs": 1, "batch_size": 8, "projector_hidden": 16, "projector_out": 8, "device": "cpu",
         "progress": False, "threads": 1, "text_tower": "random"}


@pytest.fixture
def dataset_of(caption_folder: str):
    """pairing name -> a small dataset of that pairing."""
    return {"views": "digits-lt", "image_text": caption_folder}.__getitem__


@pytest.fixture(params=list_pairings())
def setup(request, dataset_of):
    if request.param == "image_text":
        pytest.importorskip("sentence_transformers")  # the density analytics read MiniLM embeddings
    config = resolve_run_config("isogclr", dataset_of(request.param), settings=SMALL)
    assert config.pairing is get_pairing(request.param)  # resolved from the dataset, once
    return build_setup(config)


def test_every_builtin_pairing_is_registered():
    assert set(list_pairings()) >= {"views", "image_text"}
    with pytest.raises(ValueError, match="did you mean 'views'"):
        get_pairing("view")


def test_a_pairing_pickles_to_the_registered_instance():
    for name in list_pairings():
        assert pickle.loads(pickle.dumps(get_pairing(name))) is get_pairing(name)


def test_a_second_pairing_under_a_taken_name_is_refused():
    clone = type("Clone", (Pairing,), {"name": "views"})()
    with pytest.raises(ValueError, match="already registered"):
        register_pairing(clone)


def test_epoch_order_is_seeded_distinct_and_in_range(setup):
    pairing, train = setup.pairing, setup.train
    order = pairing.epoch_order(train, 0, 0)
    assert order.dtype == torch.int64 and len(order) >= setup.steps_per_epoch * setup.config.batch_size
    assert len(set(order.tolist())) == len(order)  # a batch never holds one state entry twice
    assert int(order.min()) >= 0 and int(order.max()) < train.num_samples == setup.strategy.num_samples
    assert torch.equal(order, pairing.epoch_order(train, 0, 0))  # a resumed run sees the same order
    assert not torch.equal(order, pairing.epoch_order(train, 0, 1))


def test_encode_gives_the_strategy_two_differentiable_batches(setup):
    idx = setup.pairing.epoch_order(setup.train, 0, 0)[:setup.config.batch_size]
    a, b = setup.pairing.encode(setup, idx, torch.Generator().manual_seed(0))
    assert a.shape == b.shape == (setup.config.batch_size, setup.config.projector_out)
    assert a.requires_grad and b.requires_grad


def test_a_step_then_monitor_evaluate_and_row_fields(setup):
    from tempbench.strategies import Clock

    idx = setup.pairing.epoch_order(setup.train, 0, 0)[:setup.config.batch_size]
    out = train_step(setup, idx, Clock(steps_per_epoch=setup.steps_per_epoch), torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss)
    pairing = setup.pairing
    assert set(pairing.monitor(setup)) == {pairing.monitor_metric}
    metrics, report = pairing.evaluate(setup)
    computed = {m.name for m in list_metrics(pairing=pairing.name, split="test") if m.compute is not None}
    assert computed and computed <= set(metrics)  # every computed test metric of the pairing, and only its own
    assert not {m.name for m in list_metrics() if m.pairing != pairing.name} & set(metrics)
    assert report is not None  # isogclr keeps per-sample τ: the pairing's τ analytics ran
    fields = pairing.row_fields(setup, report)
    assert fields["num_train"] == setup.strategy.num_samples  # the row counts state entries


def test_study_settings_resolve_for_every_pairing(dataset_of):
    for name in list_pairings():
        pairing = get_pairing(name)
        config = resolve_run_config("isogclr", dataset_of(name), settings={**SMALL, **pairing.study_settings,
                                                                           "monitor_every": 1})
        assert config.monitor_every == 1 and config.pairing is pairing
