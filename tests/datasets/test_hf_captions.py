"""The image–caption variant of the hf: source (`hf:NAME?caption=COL`) on tiny `save_to_disk` datasets, offline:
list columns, one row per caption (grouped by id or by identical images), several caption columns, split columns,
carved splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tempbench.datasets import CaptionDataset, load_dataset
from tempbench.datasets.sources.huggingface import import_hf_datasets


@pytest.fixture
def hf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    module = import_hf_datasets()
    for flag in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):  # read at first import, which may have happened already
        if hasattr(module.config, flag):
            monkeypatch.setattr(module.config, flag, True)
    module.disable_progress_bars()
    yield module
    module.enable_progress_bars()


def pictures(n: int, offset: int = 0) -> list[Image.Image]:
    return [Image.new("RGB", (6, 6), (10 * (i + offset), 5, 200)) for i in range(n)]


def first_pixel(ds: CaptionDataset) -> list[int]:
    return ds.images[:, 0, 0, 0].tolist()


def test_dataset_dict_with_a_list_column(hf, tmp_path: Path) -> None:
    def part(n: int, offset: int):
        caps = [[f"img {i + offset} cap {c}" for c in range(1 + (i % 2))] for i in range(n)]
        return hf.Dataset.from_dict({"image": pictures(n, offset), "sentences": caps})

    hf.DatasetDict(train=part(4, 0), validation=part(2, 10), test=part(3, 20)).save_to_disk(str(tmp_path / "d"))
    ds = load_dataset(f"hf:{tmp_path / 'd'}?caption=sentences", image_size=4)
    assert isinstance(ds, CaptionDataset) and ds.images.shape == (9, 3, 4, 4)
    assert {s: len(t) for s, t in ds.splits.items()} == {"train": 4, "val": 2, "test": 3}
    assert first_pixel(ds) == [0, 10, 20, 30, 100, 110, 200, 210, 220]
    assert ds.captions[:3] == ["img 0 cap 0", "img 1 cap 0", "img 1 cap 1"]
    assert torch.bincount(ds.caption_image).tolist() == [1, 2, 1, 2, 1, 2, 1, 2, 1]
    keyword = load_dataset(f"hf:{tmp_path / 'd'}", caption="sentences", image_size=4)  # keyword form
    assert keyword.captions == ds.captions


def test_one_row_per_caption_with_a_split_column(hf, tmp_path: Path) -> None:
    images = pictures(4)
    rows = [(i, c) for i in range(4) for c in range(3)]  # 3 captions per image, rows repeat the image
    split = {0: "train", 1: "train", 2: "val", 3: "test"}
    hf.Dataset.from_dict({"img": [images[i] for i, _ in rows], "caption": [f"{i}/{c}" for i, c in rows],
                          "img_id": [f"id{i}" for i, _ in rows], "split": [split[i] for i, _ in rows]}
                         ).save_to_disk(str(tmp_path / "rows"))
    by_id = load_dataset(f"hf:{tmp_path / 'rows'}?caption=caption&image_id=img_id&split_column=split")
    assert by_id.image_ids == ["id0", "id1", "id2", "id3"] and by_id.num_captions == 12
    assert {s: t.tolist() for s, t in by_id.splits.items()} == {"train": [0, 1], "val": [2], "test": [3]}
    assert by_id.captions[by_id.caption_indices("val")[0]] == "2/0"
    by_bytes = load_dataset(f"hf:{tmp_path / 'rows'}?caption=caption&split_column=split")  # identical images
    assert torch.equal(by_bytes.caption_image, by_id.caption_image) and by_bytes.captions == by_id.captions


def test_several_caption_columns_and_carved_splits(hf, tmp_path: Path) -> None:
    n = 20
    hf.Dataset.from_dict({"image": pictures(n), **{f"caption_{c}": [f"{i}-{c}" for i in range(n)]
                                                   for c in range(2)}}).save_to_disk(str(tmp_path / "flat"))
    spec = f"hf:{tmp_path / 'flat'}?caption=caption_0,caption_1&val_fraction=0.1&test_fraction=0.25"
    ds = load_dataset(spec)
    assert {s: len(t) for s, t in ds.splits.items()} == {"train": 13, "val": 2, "test": 5}
    pairs = [ds.captions[i:i + 2] for i in range(0, ds.num_captions, 2)]  # the two columns, image by image
    assert len(pairs) == n and all(a[:-2] == b[:-2] and a[-2:] == "-0" and b[-2:] == "-1" for a, b in pairs)
    again = load_dataset(spec)
    assert torch.equal(again.images, ds.images)  # seeded carving
    other = load_dataset(f"{spec}&split_seed=1")
    assert not torch.equal(other.images[other.splits["test"]], ds.images[ds.splits["test"]])
    assert set(np.unique(first_pixel(ds))) == set(np.unique(first_pixel(other)))


def test_errors_name_the_columns(hf, tmp_path: Path) -> None:
    hf.Dataset.from_dict({"image": pictures(3), "text": ["a", "b", "c"]}).save_to_disk(str(tmp_path / "e"))
    with pytest.raises(ValueError, match=r"no caption column \['caption'\]; columns: \['image', 'text'\]"):
        load_dataset(f"hf:{tmp_path / 'e'}?caption=caption")
    with pytest.raises(ValueError, match="no split column 'split'"):
        load_dataset(f"hf:{tmp_path / 'e'}?caption=text&split_column=split")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['label'\]"):
        load_dataset(f"hf:{tmp_path / 'e'}?caption=text&label=x")
