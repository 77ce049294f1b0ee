"""The wds: source on WebDataset shards the test writes (img2dataset layout: .jpg + .txt per sample), from a few
Flickr8k images where the shared copy is present (else synthetic JPEGs): brace patterns, val/test patterns, the
key-hash carving rule, the cache, errors."""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tempbench.datasets.sources.webdataset_shards as shards
from tempbench.datasets import load_dataset
from tempbench.datasets.locations import data_dirs
from tempbench.datasets.sources.image_folder import decode_image

wds = pytest.importorskip("webdataset")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def flickr_samples(n: int) -> list[tuple[str, bytes, str]]:
    """(key, JPEG bytes, first caption) of n Flickr8k images, or synthetic JPEGs without the shared copy."""
    archive = next((d / "flickr8k-64.tar.gz" for d in data_dirs() if (d / "flickr8k-64.tar.gz").is_file()), None)
    if archive is None:
        rng = np.random.default_rng(0)
        out = []
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, format="JPEG")
            out.append((f"{i:09d}", buf.getvalue(), f"synthetic caption {i} ."))
        return out
    with tarfile.open(archive) as tar:
        rows = list(csv.reader(io.StringIO(tar.extractfile("captions.tsv").read().decode("utf-8")), delimiter="\t",
                               quoting=csv.QUOTE_NONE))[1::5][:n]  # caption 0 of the first n images
        return [(f"{i:09d}", tar.extractfile(f"images/{r[0]}.jpg").read(), r[2]) for i, r in enumerate(rows)]


def write_shards(folder: Path, name: str, samples: list[tuple[str, bytes, str]], per_shard: int) -> str:
    """Shards name-000000.tar, ... of `per_shard` samples; returns their brace pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    count = (len(samples) + per_shard - 1) // per_shard
    for s in range(count):
        with wds.TarWriter(str(folder / f"{name}-{s:06d}.tar")) as sink:
            for key, jpg, text in samples[s * per_shard:(s + 1) * per_shard]:
                sink.write({"__key__": key, "jpg": jpg, "txt": text, "json": {"key": key}})
    return str(folder / f"{name}-{{000000..{count - 1:06d}}}.tar")


def test_patterns_per_split(tmp_path: Path) -> None:
    samples = flickr_samples(12)
    train = write_shards(tmp_path, "train", samples[:8], per_shard=3)
    val = write_shards(tmp_path, "val", samples[8:10], per_shard=2)
    test = write_shards(tmp_path, "test", samples[10:], per_shard=2)
    ds = load_dataset(f"wds:{train}?val={val}&test={test}")
    assert {s: len(t) for s, t in ds.splits.items()} == {"train": 8, "val": 2, "test": 2}
    assert ds.captions == [s[2] for s in samples] and ds.caption_image.tolist() == list(range(12))
    assert ds.image_ids == [s[0] for s in samples]
    size = ds.image_size
    expected = torch.from_numpy(decode_image(samples[9][1], size, "RGB").copy()).permute(2, 0, 1)
    assert torch.equal(ds.images[9], expected)


def test_carving_by_key_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = flickr_samples(12)
    spec = f"wds:{write_shards(tmp_path / 'a', 'x', samples, per_shard=5)}?val_fraction=0.25&test_fraction=0.25"
    ds = load_dataset(spec, image_size=8)
    u = {key: shards.key_position(key) for key, _, _ in samples}
    test_keys = [ds.image_ids[i] for i in ds.splits["test"]]
    val_keys = [ds.image_ids[i] for i in ds.splits["val"]]
    assert test_keys == [k for k, _, _ in samples if u[k] < 0.25]
    assert val_keys == [k for k, _, _ in samples if 0.25 <= u[k] < 0.5]
    regrouped = load_dataset(f"wds:{write_shards(tmp_path / 'b', 'y', samples, per_shard=2)}?val_fraction=0.25&"
                             "test_fraction=0.25", image_size=8)  # other shard layout: the same splits
    assert [regrouped.image_ids[i] for i in regrouped.splits["test"]] == test_keys
    monkeypatch.setattr(shards, "read_shards", lambda *a, **k: pytest.fail("read again"))
    assert torch.equal(load_dataset(spec, image_size=8).images, ds.images)  # cached


def test_limit_and_errors(tmp_path: Path) -> None:
    samples = flickr_samples(6)
    pattern = write_shards(tmp_path, "s", samples, per_shard=3)
    ds = load_dataset(f"wds:{pattern}?limit=4&test={pattern}&val_fraction=0", image_size=8)
    assert len(ds.splits["train"]) == len(ds.splits["test"]) == 4  # a prefix of each pattern's samples
    with pytest.raises(FileNotFoundError, match="1 of 1 shards"):
        load_dataset(f"wds:{tmp_path / 'none-{000000..000000}.tar'}")
    with wds.TarWriter(str(tmp_path / "bad-000000.tar")) as sink:
        sink.write({"__key__": "k1", "jpg": samples[0][1]})
    with pytest.raises(ValueError, match=r"sample 'k1' .* lacks a \.txt caption"):
        load_dataset(f"wds:{tmp_path / 'bad-000000.tar'}")
