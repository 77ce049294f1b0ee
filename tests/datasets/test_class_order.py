"""The class order of a long-tail cut and the flat (matched-size) profile: counts worked out by hand on the embedded
digits, one-line refusals, and the hash of every earlier configuration unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tempbench.config import resolve_run_config
from tempbench.datasets import get_card, list_cards, load_dataset, long_tail_indices, profile_counts
from tempbench.datasets.cards import Card
from tempbench.datasets.long_tail import check_class_order, class_ranking

# training images per digit in the embedded split (results/quick/runs.csv, the balanced rows' class_counts)
DIGITS = [142, 146, 142, 146, 145, 145, 145, 143, 139, 144]
# int(146 · 0.1^(i/9)) for rank i = 0..9: n_max is the largest digit (146)
EXP_BY_RANK = [146, 113, 87, 67, 52, 40, 31, 24, 18, 14]


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        call(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_label_order_is_todays_cut() -> None:
    lt = load_dataset("digits-lt")
    assert lt.class_counts == [142, *EXP_BY_RANK[1:]]  # digit 0 has only 142 of its 146 target
    assert sum(lt.class_counts) == 588
    assert lt.lt_hash == "3febb70a89cc"  # the lt_hash of every committed digits-lt row
    assert lt.long_tail == {"profile": "exp", "imbalance_factor": 0.1, "n_max": 146, "seed": 0}


def test_reversed_and_permuted_cards_give_the_hand_counts() -> None:
    reversed_ = load_dataset("digits-lt-reversed")
    # digit 9 gets the head's target 146 but has 144 images; digit 0 the tail's 14
    assert reversed_.class_counts == [14, 18, 24, 31, 40, 52, 67, 87, 113, 144]
    perm = [int(c) for c in np.random.default_rng(1).permutation(10)]
    want = [0] * 10
    for rank, digit in enumerate(perm):
        want[digit] = min(EXP_BY_RANK[rank], DIGITS[digit])
    permuted = load_dataset("digits-lt-perm1")
    assert permuted.class_counts == want and want[8] == 139 and want[3] == 14
    for ds in (reversed_, permuted):
        assert torch.bincount(ds.train_labels, minlength=10).tolist() == ds.class_counts
        assert torch.equal(ds.test_labels, load_dataset("digits").test_labels)  # the test split stays balanced
    assert reversed_.long_tail["class_order"] == "reversed"
    assert permuted.long_tail["class_order"] == "permutation:1"


def test_an_explicit_list_equals_its_named_order() -> None:
    labels = np.repeat(np.arange(4), 30)
    named = long_tail_indices(labels, 0.1, seed=2, class_order="reversed")
    listed = long_tail_indices(labels, 0.1, seed=2, class_order=[3, 2, 1, 0])
    assert named.class_counts == listed.class_counts == [3, 6, 13, 30]  # int(30 · 0.1^(i/3)) = 30, 13, 6, 3
    assert np.array_equal(named.indices, listed.indices)
    assert class_ranking("permutation:5", 7) == [int(c) for c in np.random.default_rng(5).permutation(7)]


@pytest.mark.parametrize(("order", "says"), [
    ([0, 1, 1], "repeats [1]; misses [2]"),
    ([0, 1, 5], "names ids outside it [5]; misses [2]"),
    ("backwards", "'label', 'reversed', 'permutation:SEED'"),
    ("permutation:x", "'permutation:SEED' (SEED an int >= 0)"),
    ([0, 1.0], "must hold class ids (ints)"),
])
def test_a_non_permutation_is_refused_in_one_line(order, says) -> None:
    assert says in one_line_error(check_class_order, order)


def test_a_list_of_another_length_is_refused_when_the_classes_are_known() -> None:
    msg = one_line_error(long_tail_indices, np.repeat(np.arange(4), 10), 0.5, class_order=[1, 0])
    assert msg == "class_order lists 2 classes but the dataset has 4: it must be a permutation of range(4)"


def test_run_config_checks_the_order_and_needs_a_cut() -> None:
    assert "repeats [0]" in one_line_error(resolve_run_config, "fixed", "digits-lt",
                                           settings={"class_order": [0, 0, 2, 3, 4, 5, 6, 7, 8, 9]})
    assert "keeps every training image" in one_line_error(resolve_run_config, "fixed", "digits",
                                                          settings={"class_order": "reversed"})
    # long_tail=1.0 on an ordered card is its balanced dataset: the card's order drops out with the cut
    assert resolve_run_config("fixed", "digits-lt-reversed", settings={"long_tail": 1.0}).class_order == "label"
    config = resolve_run_config("fixed", "digits-lt-perm1")
    assert (config.long_tail, config.class_order) == (0.1, "permutation:1")


def test_label_hashes_like_before() -> None:
    """The config and hash of a committed row (results/cifar10-lt-long/runs.csv, fixed-cifar10-lt-s2-a17825f18614)
    come out the same: class_order and n_total are recorded only when set."""
    settings = {"long_tail": 0.01, "long_tail_profile": "exp", "n_max": None, "subset_seed": 0, "image_size": 32,
                "encoder": "small_cnn", "text_tower": "minilm", "towers": "trained", "epoch_by": "images",
                "norm": "batch", "projector_hidden": 256, "projector_out": 128, "epochs": 9, "batch_size": 256,
                "optimizer": "sgd", "lr": 0.3, "weight_decay": 0.0005, "momentum": 0.9, "warmup_epochs": 1.0,
                "seed": 2, "val_fraction": 0.0, "monitor_every": 0, "checkpoint_every": 0, "log_every": 10,
                "eval_backend": "auto", "device": "cpu", "threads": 1, "precision": "auto", "progress": False,
                "compile": False}
    config = resolve_run_config("fixed", "cifar10-lt", settings=settings, hyperparameters={"tau": 0.2})
    assert config.hash() == "a17825f18614"
    assert "class_order" not in config.to_dict() and "n_total" not in config.to_dict()
    assert resolve_run_config("fixed", "cifar10-lt", settings={**settings, "class_order": "label"},
                              hyperparameters={"tau": 0.2}).hash() == "a17825f18614"
    reordered = resolve_run_config("fixed", "cifar10-lt", settings={**settings, "class_order": "reversed"},
                                   hyperparameters={"tau": 0.2})
    assert reordered.hash() != "a17825f18614" and reordered.to_dict()["class_order"] == "reversed"


def test_flat_profile_counts_sum_to_n_total() -> None:
    for n_total, classes in ((588, 10), (25, 4), (7, 7), (3, 5)):
        counts = profile_counts(classes, 1.0, "flat", n_total=n_total)
        assert sum(counts) == n_total and max(counts) - min(counts) <= 1
    assert profile_counts(10, 1.0, "flat", n_total=588) == [59] * 8 + [58] * 2
    cut = long_tail_indices(np.repeat(np.arange(4), 10), 1.0, "flat", n_total=25, class_order="reversed")
    assert cut.class_counts == [6, 6, 6, 7]  # the remainder goes to the first class of the order


def test_digits_matched_has_digits_lt_size() -> None:
    matched, lt = load_dataset("digits-matched"), load_dataset("digits-lt")
    assert sum(matched.class_counts) == len(matched.train_labels) == sum(lt.class_counts) == 588
    assert matched.class_counts == [59] * 8 + [58] * 2
    assert matched.long_tail == {"profile": "flat", "imbalance_factor": 1.0, "n_max": 59, "seed": 0, "n_total": 588}
    config = resolve_run_config("fixed", "digits-matched")
    assert (config.long_tail, config.long_tail_profile, config.n_total) == (1.0, "flat", 588)


@pytest.mark.parametrize(("settings", "says"), [
    ({"long_tail_profile": "flat"}, "the flat profile needs n_total"),
    ({"n_total": 300}, "n_total (images of a balanced cut) belongs to the flat profile"),
    ({"long_tail_profile": "flat", "n_total": 300, "long_tail": 0.5}, "the flat profile is balanced"),
])
def test_flat_profile_misuse_is_refused(settings, says) -> None:
    assert says in one_line_error(resolve_run_config, "fixed", "digits", settings=settings)


def test_flat_cut_larger_than_a_class_is_refused() -> None:
    msg = one_line_error(long_tail_indices, np.repeat(np.arange(3), 5), 1.0, "flat", n_total=18)
    assert msg == "the flat cut of 18 images wants 6 of class 0, which has 5: lower n_total"


def test_cards_ship_and_are_checked() -> None:
    assert {"digits-lt-reversed", "digits-lt-perm1", "digits-matched"} <= set(list_cards())
    assert get_card("digits-lt-reversed").long_tail == {"profile": "exp", "imbalance_factor": 0.1,
                                                        "class_order": "reversed"}
    base = {k: v for k, v in get_card("digits-lt").to_dict().items() if k != "long_tail"}
    base = {**base, "mean": tuple(base["mean"]), "std": tuple(base["std"]), "local": tuple(base["local"])}
    msg = one_line_error(Card, **base, long_tail={"imbalance_factor": 0.1, "class_order": [1, 1]})
    assert msg.startswith("card 'digits-lt': class_order [1, 1] is not a permutation")
    assert "needs imbalance_factor" in one_line_error(Card, **base, long_tail={"n_max": 5})
