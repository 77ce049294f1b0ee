"""The second indexing of image–text strategy state (`state_index="image_caption"`, the iSogCLR authors'): the image
anchors' state per image, the text anchors' per pair, passed to a strategy as idx (B, 2) = [image, pair].

Every stateful image_text strategy: with one caption per image and image index == pair index the two indexings are
the same run; with two captions of one image in two batches the image-side row is shared (the loop reference of
strategies/README.md, keyed by image on that side) and the text-side rows are not. The harness: the pairing hands
the strategy that idx, counts visits per image and per pair, reports τ per pair, and views refuse the setting."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from tempbench.config import resolve_run_config
from tempbench.strategies import Clock, create_strategy, get_strategy_class, list_strategies, rows_of, set_rows
from tempbench.strategies.bimodal_losses import gamma_at
from tempbench.train import build_setup, train
from tempbench.train.row import run_id
from tempbench.util import FewVisitsWarning
from tests.strategies import reference as ref
from tests.strategies import reference_bimodal as refb
from tests.strategies.test_reference import make_inputs

STATEFUL = [n for n in list_strategies(pairing="image_text")
            if get_strategy_class(n, "image_text").per_sample_state]
GCL = ("sogclr", "isogclr", "rgclg", "tempnet")  # the ones that read their state (log u, τ) in the step
# 3 images with 2 captions each: pair 2i and 2i + 1 are captions of image i. The second batch holds the other
# caption of every image of the first; the third mixes both again.
IMAGE_OF_PAIR = [0, 0, 1, 1, 2, 2]
PAIR_BATCHES = [[0, 2, 4], [3, 5, 1], [4, 1, 2]]


def image_text(name: str, n: int, **hp):
    return create_strategy(name, num_samples=n, pairing="image_text", **hp).double()


def by_image(pairs: list[int]) -> torch.Tensor:
    """The (B, 2) idx [image, pair] of a batch of pairs."""
    return torch.tensor([[IMAGE_OF_PAIR[p], p] for p in pairs])


def step(strategy, idx: torch.Tensor, t: int, dim: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward and update at step t on seeded inputs; (loss, its gradients w.r.t. both inputs) as float64."""
    a, b = make_inputs(len(idx), dim, seed=40 + t)
    clock = Clock(step=t, epoch=t // 2, epochs=3, steps_per_epoch=2)
    out = strategy(a, b, idx, clock)
    grad_a, grad_b = torch.autograd.grad(out.loss, (a, b))
    strategy.update(out, idx, clock)
    return out.loss.detach(), grad_a, grad_b


# ---- strategies ---------------------------------------------------------------------------------------------------
def test_every_stateful_image_text_strategy_is_covered():
    assert set(GCL) <= set(STATEFUL) and {"dystress", "tau_free", "tau_uncertainty"} <= set(STATEFUL)


@pytest.mark.parametrize("name", STATEFUL)
def test_one_caption_per_image_makes_both_indexings_one_run(name):
    """With image index == pair index, idx (B, 2) = [i, i] and idx (B,) = i give the same losses, gradients and
    state, step after step (visited and new entries mixed)."""
    by_pair, by_both = image_text(name, 12), image_text(name, 12)
    for t, batch in enumerate([[0, 1, 2, 3], [4, 5, 6, 7], [2, 8, 0, 9], [11, 3, 5, 10]]):
        idx = torch.tensor(batch)
        for x, y in zip(step(by_pair, idx, t), step(by_both, torch.stack([idx, idx], dim=1), t), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        for (key, x), y in zip(by_pair.state_dict().items(), by_both.state_dict().values(), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", GCL)
def test_an_images_captions_share_its_image_side_state(name):
    """Two captions of one image in two batches: the loop reference keyed (0, image) and (1, pair) gives the
    strategy's log u (and isogclr's τ and momentum) after every step, so the second caption's image anchor starts
    from the first one's u (and τ); the text side keeps a row per pair."""
    s = image_text(name, 6, gamma=0.6)
    c = s.config
    u: dict[tuple[int, int], float] = {}
    tau = {(side, i): float(s.temperatures()[i, side]) for side in (0, 1) for i in range(6)}
    momentum: dict[tuple[int, int], float] = {}
    for t, pairs in enumerate(PAIR_BATCHES):
        idx = by_image(pairs)
        a, b = make_inputs(len(pairs), 6, seed=40 + t)
        clock = Clock(step=t, epoch=t // 2, epochs=3, steps_per_epoch=2)
        out = s(a, b, idx, clock)
        entries = [tuple(e) for e in idx.tolist()]
        taus = {refb.state_key(side, e): float(out.tau[i, side]) for i, e in enumerate(entries) for side in (0, 1)}
        if name == "isogclr":
            assert taus == pytest.approx({k: tau[k] for k in taus}, rel=1e-12)  # the image's row, the pair's row
        gamma = gamma_at(c.gamma, c.gamma_schedule, c.gamma_decay_epochs, clock)
        _, new_u, grads, _ = refb.gcl_step(a, b, entries, u, taus, gamma, getattr(c, "rho", 0.0),
                                           getattr(c, "grad_clip", None), c.first_visit,
                                           getattr(c, "include_positive", False))
        s.update(out, idx, clock)
        u.update(new_u)
        keys = sorted(u)
        torch.testing.assert_close(torch.tensor([float(s.log_u[i, side]) for side, i in keys], dtype=torch.float64),
                                   torch.tensor([math.log(u[k]) for k in keys], dtype=torch.float64),
                                   rtol=1e-9, atol=1e-12)
        if name == "isogclr":
            ref.tau_momentum_step(tau, momentum, grads, c.eta, c.beta, c.tau_min, c.tau_max)
            for side, i in keys:
                assert float(s.tau[i, side]) == pytest.approx(tau[(side, i)], rel=1e-12)
                assert float(s.tau_grad_momentum[i, side]) == pytest.approx(momentum[(side, i)], rel=1e-12)
    assert sorted(u) == [(0, 0), (0, 1), (0, 2)] + [(1, p) for p in range(6)]
    assert torch.isneginf(s.log_u[3:, 0]).all()  # image rows past N_img = 3 index nothing


@pytest.mark.parametrize("name", sorted(set(STATEFUL) - set(GCL)))
def test_a_recorded_tau_goes_to_the_image_row_and_the_pair_row(name):
    s = image_text(name, 6)
    initial = s.temperatures()
    for t, pairs in enumerate(PAIR_BATCHES[:2]):
        a, b = make_inputs(len(pairs), 6, seed=40 + t)
        out = s(a, b, by_image(pairs), Clock(step=t))
        s.update(out, by_image(pairs), Clock(step=t))
        tau = s.temperatures()
        assert torch.equal(tau[[IMAGE_OF_PAIR[p] for p in pairs], 0], out.tau[:, 0])  # the latest caption's
        assert torch.equal(tau[pairs, 1], out.tau[:, 1])
    assert torch.equal(tau[3:, 0], initial[3:, 0])


def test_rows_of_and_set_rows_split_the_columns_and_refuse_other_tables():
    table = torch.arange(12.0).reshape(6, 2)
    idx = by_image([3, 5, 1])
    assert rows_of(table, idx).tolist() == [[2.0, 7.0], [4.0, 11.0], [0.0, 3.0]]
    set_rows(table, idx, -rows_of(table, idx))
    assert table[:3, 0].tolist() == [-0.0, -2.0, -4.0] and table[[1, 3, 5], 1].tolist() == [-3.0, -7.0, -11.0]
    assert table[[0, 2, 4], 1].tolist() == [1.0, 5.0, 9.0]  # the other pairs' text rows untouched
    with pytest.raises(ValueError, match=r"indexes an \(N, 2\) state table by column; this table is \(6,\)"):
        rows_of(torch.zeros(6), idx)
    with pytest.raises(ValueError, match=r"this table is \(6, 3\)"):
        set_rows(torch.zeros(6, 3), idx, torch.zeros(3, 2))


def test_check_batch_takes_b_by_2_for_image_text_only():
    a, b = make_inputs(3, 6, seed=0)
    s = image_text("isogclr", 6)
    s(a, b, by_image([0, 2, 4]), Clock())
    with pytest.raises(ValueError, match="duplicate"):
        s(a, b, by_image([0, 1, 2]), Clock())  # two captions of image 0
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 6\)"):
        s(a, b, torch.tensor([[0, 0], [1, 2], [2, 6]]), Clock())
    with pytest.raises(ValueError, match=r"shape \(3,\), got torch.int64 \(3, 2\)"):
        create_strategy("isogclr", num_samples=6)(a, b, by_image([0, 2, 4]), Clock())  # views: one index a sample


# ---- the harness --------------------------------------------------------------------------------------------------
SMALL = {"epoch_by": "pairs", "batch_size": 8, "projector_hidden": 16, "projector_out": 8, "device": "cpu",
         "progress": False, "threads": 1, "text_tower": "random", "state_index": "image_caption"}


def test_the_pairing_indexes_the_image_side_by_image(caption_folder):
    setup = build_setup(resolve_run_config("isogclr", caption_folder, settings={**SMALL, "epochs": 1}))
    pairing, data = setup.pairing, setup.train
    idx = pairing.epoch_order(data, 0, 0)[:8]
    assert torch.equal(pairing.state_index(data, idx), torch.stack([data.pairs.images[idx], idx], dim=1))
    assert setup.visits.shape == (48, 2)
    table = torch.arange(96.0).reshape(48, 2)  # 16 images, 48 pairs: the entries are 16 image rows, 48 pair rows
    assert torch.equal(pairing.state_entries(data, table), torch.cat([table[:16, 0], table[:, 1]]))
    per_pair = pairing.pair_temperatures(data, table)
    assert torch.equal(per_pair[:, 0], table[data.pairs.images, 0]) and torch.equal(per_pair[:, 1], table[:, 1])


def test_an_image_caption_run_counts_image_and_caption_visits(caption_folder, tmp_path):
    """One pairs epoch over 16 images × 3 captions: each image entry is visited 3 times, each caption entry once, so
    state_visits_min = 1 and state_visits_mean = (16·3 + 48·1)/(16 + 48) = 1.5; the τ table gives an image's
    captions its one τ_I (ρ and η small enough that the τ differ)."""
    pytest.importorskip("sentence_transformers")  # the density analytics read MiniLM embeddings
    config = resolve_run_config("isogclr", caption_folder, settings={**SMALL, "epochs": 1},
                                hyperparameters={"rho": 0.5, "eta": 0.001})
    with pytest.warns(FewVisitsWarning, match="64 state entries were updated 1.5 times on average"):
        row = train(config, out_dir=tmp_path)
    assert row["state_visits_min"] == 1.0 and row["state_visits_mean"] == 1.5
    assert row["num_train"] == 48 and row["num_train_images"] == 16
    assert '"state_index": "image_caption"' in row["config"]
    per_pair = pd.read_csv(tmp_path / "tau" / run_id(config) / "tau_per_pair.csv")
    assert len(per_pair) == 48
    assert per_pair.groupby(per_pair.index // 3)["tau_image"].nunique().eq(1).all()  # 3 captions an image, in order
    assert per_pair["tau_text"].nunique() > per_pair["tau_image"].nunique() > 1


class Killed(Exception):
    pass


def test_an_image_caption_run_resumes_with_its_visits(caption_folder, tmp_path):
    pytest.importorskip("sentence_transformers")
    config = resolve_run_config("isogclr", caption_folder, settings={**SMALL, "epochs": 2, "checkpoint_every": 1})

    def stop(epoch: int, metrics: dict) -> None:
        raise Killed

    with pytest.raises(Killed):
        train(config, out_dir=tmp_path, on_epoch=stop)
    row = train(config, out_dir=tmp_path, resume=tmp_path / "checkpoints" / f"{run_id(config)}.pt")
    assert row["state_visits_min"] == 2.0 and row["state_visits_mean"] == 3.0  # image entries 6, caption entries 2


def test_views_refuse_the_image_caption_index():
    with pytest.raises(ValueError, match=r"^state_index='image_caption' is an image_text setting; views runs keep one "
                                         r"state entry per image$"):
        resolve_run_config("isogclr", "digits-lt", settings={"state_index": "image_caption"})
    with pytest.raises(ValueError, match="state_index must be 'pair' or 'image_caption', got 'image'"):
        resolve_run_config("isogclr", "digits-lt", settings={"state_index": "image"})


def test_the_default_index_leaves_the_hash_and_checkpoints_of_earlier_runs_alone(caption_folder):
    default = resolve_run_config("isogclr", caption_folder, settings={"text_tower": "random"})
    spelled = resolve_run_config("isogclr", caption_folder, settings={"text_tower": "random", "state_index": "pair"})
    other = resolve_run_config("isogclr", caption_folder, settings={"text_tower": "random",
                                                                    "state_index": "image_caption"})
    assert "state_index" not in default.to_dict() and default.to_dict() == spelled.to_dict()
    assert default.hash() == spelled.hash() != other.hash()
    assert other.to_dict()["state_index"] == "image_caption"
