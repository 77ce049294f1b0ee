"""Image–caption data: the tsv: source (folder, archive, cache), `CaptionDataset`, `dataset_pairing`, the flickr8k
card (on the shared copy where it is present)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tempbench.datasets.sources.caption_tsv as caption_tsv
from tempbench.datasets import CaptionDataset, Card, dataset_pairing, get_card, load_dataset
from tempbench.datasets.locations import data_dirs

SPLITS = {"train": ["t0", "t1", "t2"], "val": ["v0"], "test": ["s0", "s1"]}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def colour(i: int) -> tuple[int, int, int]:
    return (20 * i % 256, 255 - 30 * i % 256, 7 * i % 256)


def write_caption_folder(root: Path, per_image: int = 2, unsplit: tuple[str, ...] = ("u0",)) -> Path:
    """8x8 flat-colour PNGs, `per_image` captions each (written out of order), split files and unsplit images."""
    ids = [i for s in SPLITS.values() for i in s] + list(unsplit)
    (root / "images").mkdir(parents=True)
    (root / "splits").mkdir()
    rows = ["image_id\tcaption_index\tcaption"]
    for n, image_id in enumerate(ids):
        Image.new("RGB", (8, 8), colour(n)).save(root / "images" / f"{image_id}.png")
        rows += [f"{image_id}\t{c}\t{image_id} caption {c} with \"quotes\" ." for c in reversed(range(per_image))]
    (root / "captions.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for split, names in SPLITS.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    (root / "splits" / "unsplit.txt").write_text("\n".join(unsplit) + "\n")
    return root


def test_round_trip(tmp_path: Path) -> None:
    ds = load_dataset(f"tsv:{write_caption_folder(tmp_path / 'caps')}")
    assert isinstance(ds, CaptionDataset) and ds.pairing == "image_text"
    assert ds.images.shape == (6, 3, 8, 8) and ds.images.dtype == torch.uint8 and ds.image_size == 8
    assert ds.image_ids == ["t0", "t1", "t2", "v0", "s0", "s1"]  # split after split, unsplit u0 left out
    assert {s: t.tolist() for s, t in ds.splits.items()} == {"train": [0, 1, 2], "val": [3], "test": [4, 5]}
    assert ds.images[4, :, 0, 0].tolist() == list(colour(4))  # PNG: exact
    assert ds.captions[:2] == ['t0 caption 0 with "quotes" .', 't0 caption 1 with "quotes" .']  # by caption_index
    assert ds.caption_image.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert ds.caption_indices("test").tolist() == [8, 9, 10, 11]
    images, captions, local = ds.split_pairs("test")
    assert images.tolist() == [4, 5] and captions.tolist() == [8, 9, 10, 11] and local.tolist() == [0, 0, 1, 1]
    summary = ds.summary()
    assert summary["splits"]["train"] == {"images": 3, "captions": 6} and summary["captions_per_image"]["max"] == 2
    assert len(ds.mean) == 3 and ds.augment == "simclr"


def test_image_size_channels_and_archive(tmp_path: Path) -> None:
    root = write_caption_folder(tmp_path / "caps")
    archive = tmp_path / "caps.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="wrapped")  # one wrapping folder, as archives often have
    ds = load_dataset(f"tsv:{archive}", image_size=4, channels=1)
    assert ds.images.shape == (6, 1, 4, 4) and ds.num_captions == 12


def test_decoded_once_then_cached_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_caption_folder(tmp_path / "caps")
    first = load_dataset(f"tsv:{root}")
    monkeypatch.setattr(caption_tsv, "decode_images", lambda *a, **k: pytest.fail("decoded again"))
    assert torch.equal(load_dataset(f"tsv:{root}").images, first.images)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "images" / "t1.png")  # a changed file: a new cache key
    monkeypatch.undo()
    assert load_dataset(f"tsv:{root}").images[1, :, 0, 0].tolist() == [1, 2, 3]


def test_bad_folders(tmp_path: Path) -> None:
    root = write_caption_folder(tmp_path / "caps")
    (root / "images" / "s1.png").unlink()
    with pytest.raises(ValueError, match=r"without an image file or a caption, e.g. \['s1'\]"):
        load_dataset(f"tsv:{root}")
    other = write_caption_folder(tmp_path / "other")
    (other / "captions.tsv").write_text("id\tcaption\n")
    with pytest.raises(ValueError, match="the first line must be the header"):
        load_dataset(f"tsv:{other}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(f"tsv:{tmp_path / 'nowhere'}")


def test_pairing_reads_only_the_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempbench.datasets.build.load_source", lambda *a, **k: pytest.fail("loaded"))
    assert dataset_pairing("flickr8k") == "image_text" and dataset_pairing("cifar10") == "views"
    assert dataset_pairing("tsv:/nowhere") == dataset_pairing("wds:/x-{0..3}.tar") == "image_text"
    assert dataset_pairing("hf:org/name") == "views"
    assert dataset_pairing("hf:org/name?caption=text") == "image_text"
    with pytest.raises(ValueError, match="unknown dataset card or source"):
        dataset_pairing("flickr9k")


def test_no_long_tail_for_captions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no long-tail cut"):
        load_dataset(f"tsv:{tmp_path}", long_tail=0.1)


def test_card_pairing_is_checked() -> None:
    card = get_card("flickr8k")
    assert card.pairing == "image_text" and card.captions_per_image == 5
    assert card.splits == {"train": 6000, "val": 1000, "test": 1000} and card.image_size == 64
    assert "aspect ratio" in card.description and card.long_tail is None
    base = {"name": "x", "description": "", "source": "tsv:x", "image_size": 8, "channels": 3, "mean": (0.5,) * 3,
            "std": (0.2,) * 3, "augment": "simclr"}
    with pytest.raises(ValueError, match="takes no long_tail"):
        Card(**base, splits={"train": 1}, pairing="image_text", long_tail={"imbalance_factor": 0.1})
    with pytest.raises(ValueError, match="pairing must be one of"):
        Card(**base, splits={"train": 1}, pairing="pairs")
    with pytest.raises(ValueError, match="captions_per_image applies to image_text"):
        Card(**base, splits={"train": 1}, captions_per_image=5)


def flickr8k_copy() -> Path | None:
    return next((d / "flickr8k-64.tar.gz" for d in data_dirs() if (d / "flickr8k-64.tar.gz").is_file()), None)


@pytest.mark.skipif(flickr8k_copy() is None, reason="no flickr8k-64.tar.gz in the data directories")
def test_flickr8k_card_on_the_shared_copy() -> None:
    ds = load_dataset("flickr8k")
    assert ds.images.shape == (8000, 3, 64, 64) and ds.num_captions == 40000  # 91 unsplit images left out
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [6000, 1000, 1000]
    assert [len(ds.caption_indices(s)) for s in ("train", "val", "test")] == [30000, 5000, 5000]
    assert torch.bincount(ds.caption_image).tolist() == [5] * 8000
    first_test = ds.splits["test"][0]
    assert ds.image_ids[first_test] == "3385593926_d3e9c21170"  # splits/test.txt's first line
    assert ds.mean == get_card("flickr8k").mean
    mean = ds.images[ds.splits["train"]].double().div(255).mean(dim=(0, 2, 3)).numpy()
    np.testing.assert_allclose(mean, ds.mean, atol=1e-4)
