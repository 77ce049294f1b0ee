"""The hf source on tiny local datasets written with `save_to_disk`, with the hub switched off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tempbench.datasets import load_dataset
from tempbench.datasets.sources.huggingface import import_hf_datasets


@pytest.fixture
def hf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    module = import_hf_datasets()
    # the flags are read when `datasets` is first imported, which may have happened earlier in this session
    for flag in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        if hasattr(module.config, flag):
            monkeypatch.setattr(module.config, flag, True)
    module.disable_progress_bars()
    yield module
    module.enable_progress_bars()


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)) for _ in range(n)]


def test_single_dataset_is_split_and_columns_are_named(hf, tmp_path: Path) -> None:
    pictures = images(20)
    hf.Dataset.from_dict({"img": pictures, "fine_label": [i % 2 for i in range(20)],
                          "other": list(range(20))}).save_to_disk(str(tmp_path / "single"))
    ds = load_dataset(f"hf:{tmp_path / 'single'}?image=img&label=fine_label")
    assert ds.train_images.shape == (16, 3, 6, 6) and ds.test_images.shape == (4, 3, 6, 6)
    assert ds.class_counts == [8, 8] and ds.classes == ["0", "1"]
    original = torch.from_numpy(np.stack([np.asarray(p) for p in pictures])).permute(0, 3, 1, 2)
    assert any(torch.equal(ds.train_images[0], x) for x in original)  # PNG-encoded by HF: lossless
    same = load_dataset(f"hf:{tmp_path / 'single'}", image="img", label="fine_label")  # keyword form
    assert torch.equal(same.train_images, ds.train_images)


def test_dataset_dict_with_class_labels(hf, tmp_path: Path) -> None:
    features = hf.Features({"image": hf.Image(), "label": hf.ClassLabel(names=["ant", "bee"])})
    splits = hf.DatasetDict(
        train=hf.Dataset.from_dict({"image": images(10), "label": [0] * 6 + [1] * 4}, features=features),
        test=hf.Dataset.from_dict({"image": images(4, 1), "label": [0, 1, 0, 1]}, features=features))
    splits.save_to_disk(str(tmp_path / "dict"))
    ds = load_dataset(f"hf:{tmp_path / 'dict'}", image_size=4, long_tail=0.5)
    assert ds.classes == ["ant", "bee"] and ds.class_counts == [6, 3]
    assert ds.train_images.shape == (9, 3, 4, 4) and ds.test_labels.tolist() == [0, 1, 0, 1]


def test_array_column(hf, tmp_path: Path) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (10, 5, 5), dtype=np.uint8)
    hf.Dataset.from_dict({"pixels": pixels, "label": [i % 2 for i in range(10)]}).save_to_disk(str(tmp_path / "a"))
    ds = load_dataset(f"hf:{tmp_path / 'a'}?image=pixels")
    assert ds.train_images.shape == (8, 1, 5, 5) and ds.train_images.dtype == torch.uint8


def test_missing_label_column(hf, tmp_path: Path) -> None:
    hf.Dataset.from_dict({"img": images(4), "label": [0, 1, 0, 1]}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(ValueError, match=r"no label column 'fine_label'; columns: \['img', 'label'\]"):
        load_dataset(f"hf:{tmp_path / 'd'}?label=fine_label")
    hf.Dataset.from_dict({"img": images(4), "y": [0, 1, 0, 1]}).save_to_disk(str(tmp_path / "e"))
    with pytest.raises(ValueError, match=r"no label column .*columns: \['img', 'y'\]; name one with \?label="):
        load_dataset(f"hf:{tmp_path / 'e'}")
