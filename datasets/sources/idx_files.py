"""`idx:PATH`: MNIST-format IDX files (train-*/t10k-* images and labels, gzipped or not) in one folder, e.g. the
Debian package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..splits import RawSplits, images_from_numpy
from . import Source, register_source

IDX_FILES = {"train_images": ("train-images",), "train_labels": ("train-labels",),
             "test_images": ("t10k-images", "test-images"), "test_labels": ("t10k-labels", "test-labels")}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format: zero bytes, type 0x08 = uint8, ndim, big-endian int32 dims, data) -> array."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()}, expected 000008xx)")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"IDX file {path} declares shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def find_idx_file(folder: Path, prefixes: tuple[str, ...]) -> Path:
    """The file in `folder` whose name starts with one of `prefixes` (e.g. train-images-idx3-ubyte[.gz])."""
    for prefix in prefixes:
        hits = sorted(p for p in folder.iterdir() if p.name.startswith(prefix) and "ubyte" in p.name)
        if hits:
            return hits[0]
    raise FileNotFoundError(f"no {' or '.join(p + '-*ubyte[.gz]' for p in prefixes)} file in {folder}")


def load_idx(path: str, options: dict[str, Any], image_size: int | None, channels: int | None) -> RawSplits:
    """MNIST-format IDX files in one folder: train-images/labels and t10k-images/labels, gzipped or not."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"IDX folder {folder} does not exist")
    arrays = {key: read_idx(find_idx_file(folder, prefixes)) for key, prefixes in IDX_FILES.items()}
    for split in ("train", "test"):
        if arrays[f"{split}_images"].ndim != 3 or len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise ValueError(f"{folder}: {split} images {arrays[f'{split}_images'].shape} do not match labels "
                             f"{arrays[f'{split}_labels'].shape}")
    num_classes = int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    return RawSplits(train_images=images_from_numpy(arrays["train_images"]),
                     train_labels=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
                     test_images=images_from_numpy(arrays["test_images"]),
                     test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
                     classes=[str(c) for c in range(num_classes)], origin=str(folder))


register_source(Source("idx", "idx:PATH — MNIST-format IDX files (train-*/t10k-* images and labels, .gz or not) in "
                       "folder PATH", load_idx))
