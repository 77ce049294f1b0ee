"""The imagefolder source: PNG/JPEG/grayscale round trip, the decode cache and its invalidation, archives, errors."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tempbench.datasets.sources.image_folder as imagefolder
from tempbench.datasets import load_dataset

COLOURS = {"cat": (200, 30, 10), "dog": (10, 120, 240)}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_folder(root: Path, per_class: int = 3, test_name: str = "test") -> Path:
    """Flat-coloured 8x8 images per class: PNG RGB, JPEG RGB and a grayscale PNG (mode L) in train/."""
    for split, n in (("train", per_class), (test_name, 2)):
        for name, rgb in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8), rgb).save(folder / f"{i}.png")
            Image.new("RGB", (8, 8), rgb).save(folder / "x.jpg", quality=95)
            if split == "train":
                Image.new("L", (8, 8), 77).save(folder / "gray.png")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    return root


def test_round_trip(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    ds = load_dataset(f"imagefolder:{root}")
    assert ds.classes == ["cat", "dog"] and ds.class_counts == [5, 5]
    assert ds.train_images.shape == (10, 3, 8, 8) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (6, 3, 8, 8) and ds.test_labels.tolist() == [0, 0, 0, 1, 1, 1]
    first = ds.train_images[0]  # 0.png of cat: exact
    assert first[:, 0, 0].tolist() == list(COLOURS["cat"])
    gray = ds.train_images[3]  # files sorted by name: 0.png, 1.png, 2.png, gray.png, x.jpg
    assert gray[:, 3, 3].tolist() == [77, 77, 77]  # grayscale file converted to RGB
    jpeg = ds.train_images[4].int()
    assert (jpeg[:, 4, 4] - torch.tensor(COLOURS["cat"])).abs().max() <= 6  # lossy but close
    assert ds.long_tail is None and len(ds.mean) == 3 and ds.augment == "simclr"


def test_resize_channels_long_tail_and_val(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs", per_class=6, test_name="val")
    ds = load_dataset(f"imagefolder:{root}", long_tail=0.5, image_size=4, channels=1, seed=1)
    assert ds.train_images.shape[1:] == (1, 4, 4) and ds.test_images.shape == (6, 1, 4, 4)
    assert ds.class_counts == [8, 4] and ds.long_tail["imbalance_factor"] == 0.5


def test_cache_is_used_then_invalidated(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_folder(tmp_path / "imgs")
    first = load_dataset(f"imagefolder:{root}")
    assert len(list((cache / "imagefolder").glob("*.pt"))) == 1

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(imagefolder, "decode_images", refuse)
    second = load_dataset(f"imagefolder:{root}")
    assert torch.equal(first.train_images, second.train_images) and torch.equal(first.test_images, second.test_images)

    changed = root / "train" / "dog" / "0.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(f"imagefolder:{root}")
    monkeypatch.undo()
    monkeypatch.setenv("TEMPBENCH_CACHE", str(cache))
    third = load_dataset(f"imagefolder:{root}")
    assert third.train_images[5, :, 0, 0].tolist() == [1, 2, 3]


def test_archive_is_extracted_once(tmp_path: Path, cache: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="wrapped")  # a single top folder around train/ and test/, as many archives have
    ds = load_dataset(f"imagefolder:{archive}")
    assert ds.train_images.shape == (10, 3, 8, 8)
    assert len(list((cache / "extracted").iterdir())) == 1
    assert torch.equal(load_dataset(f"imagefolder:{archive}").train_images, ds.train_images)


def test_parallel_decode_matches_serial(tmp_path: Path) -> None:
    paths = []
    for i in range(imagefolder.CHUNK + 7):  # two chunks: worker processes
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((5, 5), i % 256, np.uint8)).save(path)
        paths.append(path)
    out = imagefolder.decode_images(paths, 5, "L", workers=2)
    assert out.shape == (len(paths), 1, 5, 5) and out[:, 0, 2, 2].tolist() == [i % 256 for i in range(len(paths))]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")
    (tmp_path / "only" / "train" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"needs train/<class>/\* and test/"):
        load_dataset(f"imagefolder:{tmp_path / 'only'}")


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    (root / "train" / "emu").mkdir()
    (root / "train" / "emu" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=f"class folder {root / 'train' / 'emu'} holds no images"):
        load_dataset(f"imagefolder:{root}")


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    bad = root / "train" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ValueError, match=f"cannot decode image {bad}"):
        load_dataset(f"imagefolder:{root}")


def test_test_class_unknown_to_train(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    (root / "test" / "emu").mkdir()
    Image.new("RGB", (8, 8)).save(root / "test" / "emu" / "0.png")
    with pytest.raises(ValueError, match=r"classes that train/ lacks: \['emu'\]"):
        load_dataset(f"imagefolder:{root}")


def test_unreadable_cache_is_rebuilt(tmp_path: Path, cache: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    first = load_dataset(f"imagefolder:{root}")
    (cached,) = (cache / "imagefolder").glob("*.pt")
    cached.write_bytes(b"truncated")
    assert torch.equal(load_dataset(f"imagefolder:{root}").train_images, first.train_images)
    assert cached.stat().st_size > 100
