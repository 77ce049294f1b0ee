"""Sources: a string `kind:argument[?option=value&...]` names where images come from; each kind has a small loader
that returns `RawSplits` (uint8 (N, C, H, W) train and test images, int64 labels, class names)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import torch

from .locations import cache_dir, data_dirs
from .splits import RawSplits, images_from_numpy

SOURCE_KINDS = {
    "sklearn": "sklearn:digits — scikit-learn's load_digits, 8x8 grayscale, no files needed",
    "torchvision": "torchvision:CIFAR10|CIFAR100 — downloads through torchvision where the network allows",
    "imagefolder": "imagefolder:PATH — PATH/train/<class>/* and PATH/test/<class>/* (or val/), or a .tar.gz of that",
    "hf": "hf:NAME[?image=COL&label=COL] — Hugging Face datasets: a hub name, local files, or a save_to_disk folder",
    "idx": "idx:PATH — MNIST-format IDX files (train-*/t10k-* images and labels, .gz or not) in folder PATH",
}
TORCHVISION_SETS = ("CIFAR10", "CIFAR100")


def parse_source(spec: str) -> tuple[str, str, dict[str, str]]:
    """'kind:argument?a=1&b=2' -> (kind, argument, {"a": "1", "b": "2"}); unknown kinds list the valid ones."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in SOURCE_KINDS:
        raise ValueError(f"unknown source {spec!r}; source kinds: {', '.join(SOURCE_KINDS)} (as kind:argument)")
    argument, _, query = rest.partition("?")
    if not argument:
        raise ValueError(f"source {spec!r} needs an argument after {kind}:, e.g. {SOURCE_KINDS[kind].split()[0]}")
    return kind, argument, dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))


def take_options(kind: str, options: dict[str, Any], valid: dict[str, Any]) -> dict[str, Any]:
    """`valid` (name -> default) updated from `options`; an unknown option is a ValueError listing the valid ones."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for source kind {kind!r}; valid: {sorted(valid) or 'none'}")
    return {**valid, **options}


# ---- sklearn:digits --------------------------------------------------------------------------------------------
def load_sklearn(name: str, options: dict[str, Any]) -> RawSplits:
    """scikit-learn's digits: values 0..16 scaled to 0..255, a stratified split fixed by split_seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    opts = take_options("sklearn", options, {"test_fraction": 0.2, "split_seed": 0})
    if name != "digits":
        raise ValueError(f"unknown scikit-learn dataset {name!r}; valid: digits")
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    train, test = train_test_split(np.arange(len(images)), test_size=float(opts["test_fraction"]),
                                   stratify=digits.target, random_state=int(opts["split_seed"]))
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return RawSplits(train_images=images_from_numpy(images[train]), train_labels=labels[train],
                     test_images=images_from_numpy(images[test]), test_labels=labels[test],
                     classes=[str(c) for c in range(10)], origin="sklearn.datasets.load_digits",
                     augment_hint="digits")


# ---- torchvision:CIFAR10|CIFAR100 ------------------------------------------------------------------------------
def load_torchvision(name: str, options: dict[str, Any]) -> RawSplits:
    """CIFAR-10/100 through torchvision, downloaded into the cache directory (or `root`) on first use."""
    opts = take_options("torchvision", options, {"root": str(cache_dir() / "torchvision")})
    if name not in TORCHVISION_SETS:
        raise ValueError(f"unknown torchvision dataset {name!r}; valid: {', '.join(TORCHVISION_SETS)}")
    import torchvision

    cls = getattr(torchvision.datasets, name)
    try:
        train = cls(root=opts["root"], train=True, download=True)
        test = cls(root=opts["root"], train=False, download=True)
    except Exception as exc:
        raise FileNotFoundError(
            f"torchvision could not download or read {name} into {opts['root']} ({type(exc).__name__}: {exc}). "
            f"Offline, use a local copy instead: an image folder or its .tar.gz via imagefolder:PATH, or put "
            f"{name.lower()}-jpeg.tar.gz into one of the data directories ({', '.join(map(str, data_dirs()))}; "
            f"add more with TEMPBENCH_DATA)") from None
    return RawSplits(train_images=images_from_numpy(train.data), train_labels=torch.tensor(train.targets),
                     test_images=images_from_numpy(test.data), test_labels=torch.tensor(test.targets),
                     classes=list(train.classes), origin=f"torchvision.datasets.{name}({opts['root']})")


# ---- idx:PATH ----------------------------------------------------------------------------------------------------
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


def load_idx(path: str, options: dict[str, Any]) -> RawSplits:
    """MNIST-format IDX files in one folder: train-images/labels and t10k-images/labels, gzipped or not."""
    take_options("idx", options, {})
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


def load_source(spec: str, options: dict[str, Any] | None = None, image_size: int | None = None,
                channels: int | None = None) -> RawSplits:
    """Load a source string. Options from the string and `options` (which win) go to the kind's loader; image
    folders and Hugging Face images are decoded straight to `image_size` and `channels`, other kinds come as stored."""
    from . import hf, imagefolder

    kind, argument, query = parse_source(spec)
    opts = {**query, **(options or {})}
    if kind == "imagefolder":
        take_options(kind, opts, {})
        return imagefolder.load_imagefolder(argument, image_size, channels)
    if kind == "hf":
        return hf.load_hf(argument, opts, image_size, channels)
    return {"sklearn": load_sklearn, "torchvision": load_torchvision, "idx": load_idx}[kind](argument, opts)
