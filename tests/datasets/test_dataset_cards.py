"""Dataset cards and `load_dataset` on the embedded digits: the public record, long-tail overrides, bad input."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

import tempbench.datasets.locations as locations
from tempbench.datasets import get_card, list_cards, load_dataset

SHIPPED = ["cifar10", "cifar10-lt", "cifar100", "cifar100-lt", "digits", "digits-lt", "digits-lt-perm1",
           "digits-lt-reversed", "digits-matched", "fashion-mnist", "fashion-mnist-lt", "flickr8k", "flickr8k-128"]
CUT = ("-lt", "-lt-perm1", "-lt-reversed", "-matched")  # the cards whose training split is cut


def test_every_card_ships_and_reads() -> None:
    assert list_cards() == SHIPPED
    for name in SHIPPED:
        card = get_card(name)
        assert card.name == name and card.source and card.splits["train"] > 0
        assert len(card.mean) == len(card.std) == card.channels
        assert (card.long_tail is not None) == name.endswith(CUT)
    assert get_card("cifar100-lt").long_tail == {"profile": "exp", "imbalance_factor": 0.01}
    assert get_card("digits-lt").long_tail["imbalance_factor"] == 0.1


def test_unknown_card_lists_the_cards() -> None:
    with pytest.raises(ValueError, match="unknown dataset card 'cifar11'; cards: cifar10, cifar10-lt"):
        get_card("cifar11")
    with pytest.raises(ValueError, match=r"unknown dataset card or source 'cifar11' \(did you mean 'cifar10'\?\); "
                                         r"cards: .*source kinds: .*sklearn:"):
        load_dataset("cifar11")


def test_unknown_source_kind_lists_the_kinds() -> None:
    with pytest.raises(ValueError, match="unknown source kind 'zip'; source kinds: hf, idx, imagefolder, sklearn"):
        load_dataset("zip:foo")
    with pytest.raises(ValueError, match="unknown scikit-learn dataset 'iris'"):
        load_dataset("sklearn:iris")
    with pytest.raises(ValueError, match=r"unknown option.*'colour'"):
        load_dataset("sklearn:digits?colour=1")


def test_digits_record() -> None:
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.num_classes == 10 and ds.classes == [str(c) for c in range(10)]
    assert ds.train_images.shape == (1437, 1, 8, 8) and ds.test_images.shape == (360, 1, 8, 8)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    assert ds.train_images.is_contiguous() and ds.train_images.device.type == "cpu"
    assert int(ds.train_images.max()) == 255 and int(ds.train_images.min()) == 0
    assert sum(ds.class_counts) == 1437 and ds.long_tail is None and ds.augment == "digits"
    assert ds.image_size == 8 and ds.mean == (0.3053,) and len(ds.lt_hash) == 12


def test_digits_lt_cuts_train_only() -> None:
    balanced, lt = load_dataset("digits"), load_dataset("digits-lt")
    assert lt.class_counts[0] == 142 and lt.class_counts[-1] == 14  # n_max 146 · 0.1, class 0 keeps all 142
    assert lt.class_counts == sorted(lt.class_counts, reverse=True)
    assert torch.equal(lt.test_images, balanced.test_images) and torch.equal(lt.test_labels, balanced.test_labels)
    assert torch.bincount(lt.train_labels).tolist() == lt.class_counts
    assert lt.long_tail == {"profile": "exp", "imbalance_factor": 0.1, "n_max": 146, "seed": 0}
    assert torch.equal(lt.train_images, balanced.train_images[lt.train_indices])


def test_long_tail_overrides() -> None:
    assert load_dataset("digits-lt", long_tail=1.0).lt_hash == load_dataset("digits").lt_hash
    assert load_dataset("digits-lt", long_tail=1.0).long_tail is None
    step = load_dataset("digits", long_tail=0.5, profile="step", n_max=100, seed=2)
    assert step.class_counts == [100] * 5 + [50] * 5 and step.long_tail["seed"] == 2
    assert load_dataset("digits-lt", seed=1).lt_hash != load_dataset("digits-lt", seed=0).lt_hash


def test_image_size_and_source_without_card() -> None:
    ds = load_dataset("sklearn:digits", long_tail=0.1, image_size=16)
    assert ds.train_images.shape[1:] == (1, 16, 16) and ds.name == "sklearn:digits"
    assert ds.class_counts == load_dataset("digits-lt").class_counts
    assert ds.augment == "digits" and len(ds.mean) == 1


@pytest.mark.parametrize("r", [0, 1.01, -1, 2])
def test_bad_imbalance_factor_fails_before_loading(r: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempbench.datasets.build.load_source", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        load_dataset("sklearn:digits", long_tail=r)


def test_bad_image_size_and_empty_class() -> None:
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        load_dataset("digits", image_size=0)
    with pytest.raises(ValueError, match=r"leaves class 7 \('7': 143 images, target 0\), 8 .*9 .* empty"):
        load_dataset("digits", long_tail=0.001)


def test_offline_card_error_names_every_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    monkeypatch.setattr(locations, "PACKAGE_PARENT", tmp_path / "repo")
    monkeypatch.setenv("TEMPBENCH_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10-lt")
    message = str(info.value)
    for place in (tmp_path / "mine", tmp_path.parent / "shared" / "data", tmp_path / "cache"):
        assert str(place / "cifar10-jpeg.tar.gz") in message
    assert "URLError" in message and "imagefolder:PATH" in message and "TEMPBENCH_DATA" in message
