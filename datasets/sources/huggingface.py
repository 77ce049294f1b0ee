"""`hf:NAME`: images through Hugging Face `datasets` — a hub name, local data files, or a `save_to_disk` folder.

Options (in the source string `hf:NAME?image=img&label=fine_label` or as keyword arguments): image and label column
(default: the first Image / ClassLabel column, else "image"/"img" and "label"/"labels"), train and test split names,
config (the hub configuration). A single Dataset without splits is split 80/20, stratified, seeded by split_seed.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ..splits import RawSplits, images_from_numpy
from . import Source, register_source
from .image_folder import decode_images, image_defaults

TEST_SPLITS = ("test", "validation", "valid", "val")
IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels")
OPTIONS = {"image": None, "label": None, "train": "train", "test": None, "config": None,
           "test_fraction": 0.2, "split_seed": 0}


def import_hf_datasets() -> ModuleType:
    """Hugging Face's top-level `datasets`.

    Why the care: this repository's own `datasets/` folder is a package too, and `python -m ...` run from a
    checkout (or a copy of one) puts that checkout first on sys.path, where it would shadow Hugging Face's. Entries
    whose `datasets/` is a tempbench checkout's (it holds `cards/`) are skipped for this one import.
    """
    found = sys.modules.get("datasets")
    if found is not None and hasattr(found, "load_from_disk"):
        return found
    if found is not None:  # a checkout's folder, imported under the top-level name by accident
        del sys.modules["datasets"]
    saved = sys.path[:]
    sys.path[:] = [p for p in saved if not (Path(p or ".") / "datasets" / "cards").is_dir()]
    try:
        return importlib.import_module("datasets")
    except ImportError as exc:
        raise ImportError("the hf: source needs Hugging Face datasets (pip install datasets)") from exc
    finally:
        sys.path[:] = saved


def open_splits(hf: ModuleType, name: str, opts: dict[str, Any]) -> tuple[Any, Any]:
    """(train, test) Dataset objects from a save_to_disk folder, local files or the hub."""
    path = Path(name).expanduser()
    if path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "state.json")):
        obj = hf.load_from_disk(str(path))
    else:
        try:
            obj = hf.load_dataset(name, opts["config"])
        except (ConnectionError, OSError) as exc:  # the hub's not-found errors are OSErrors too
            raise FileNotFoundError(f"Hugging Face datasets could not load {name!r} ({type(exc).__name__}: {exc}); "
                                    f"offline, point hf: at a save_to_disk folder or local data files") from None
    if isinstance(obj, hf.Dataset):
        return split_single(obj, opts)
    splits = list(obj)
    if opts["train"] not in obj:
        raise ValueError(f"hf:{name} has no split {opts['train']!r}; splits: {splits}")
    test = opts["test"] or next((s for s in TEST_SPLITS if s in obj), None)
    if test not in obj:
        raise ValueError(f"hf:{name} has no test split (tried {opts['test'] or TEST_SPLITS}); splits: {splits}")
    return obj[opts["train"]], obj[test]


def split_single(ds: Any, opts: dict[str, Any]) -> tuple[Any, Any]:
    """A Dataset without splits -> a stratified (train, test) split fixed by split_seed."""
    from sklearn.model_selection import train_test_split

    label = pick_column(ds, opts["label"], "ClassLabel", LABEL_COLUMNS, "label")
    train, test = train_test_split(np.arange(len(ds)), test_size=float(opts["test_fraction"]),
                                   stratify=np.asarray(ds[label]), random_state=int(opts["split_seed"]))
    return ds.select(np.sort(train)), ds.select(np.sort(test))


def pick_column(ds: Any, wanted: str | None, feature_type: str, fallbacks: tuple[str, ...], role: str) -> str:
    """The named column, else the first of `feature_type`, else the first fallback name present."""
    columns = list(ds.features)
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"the Hugging Face dataset has no {role} column {wanted!r}; columns: {columns}")
        return wanted
    typed = [c for c, f in ds.features.items() if type(f).__name__ == feature_type]
    found = typed or [c for c in fallbacks if c in columns]
    if not found:
        raise ValueError(f"the Hugging Face dataset has no {role} column (no {feature_type} feature and none of "
                         f"{list(fallbacks)}); columns: {columns}; name one with ?{role}=COLUMN")
    return found[0]


def read_labels(train: Any, test: Any, column: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Labels of both splits as int64 class ids in [0, C), and the class names."""
    feature = train.features[column]
    if type(feature).__name__ == "ClassLabel":
        return (torch.tensor(train[column], dtype=torch.int64), torch.tensor(test[column], dtype=torch.int64),
                list(feature.names))
    train_values, test_values = list(train[column]), list(test[column])
    values = sorted(set(train_values) | set(test_values))
    index = {v: i for i, v in enumerate(values)}
    return (torch.tensor([index[v] for v in train_values], dtype=torch.int64),
            torch.tensor([index[v] for v in test_values], dtype=torch.int64), [str(v) for v in values])


def read_images(hf: ModuleType, ds: Any, column: str, image_size: int | None, channels: int | None) -> torch.Tensor:
    """The image column -> uint8 (N, C, H, W): Image features are decoded by our parallel decoder (at the target
    size and mode), array columns are taken as they are (resized later)."""
    if type(ds.features[column]).__name__ != "Image":
        return images_from_numpy(pixel_array(np.asarray(ds.with_format("numpy")[column]), column))
    cells = ds.cast_column(column, hf.Image(decode=False))[column]
    items = [c["bytes"] if c.get("bytes") is not None else Path(c["path"]) for c in cells]
    if not items:
        raise ValueError(f"the Hugging Face dataset's {column!r} column is empty")
    default_size, default_channels = image_defaults(items[0])
    mode = "L" if (channels or default_channels) == 1 else "RGB"
    return decode_images(items, image_size or default_size, mode)


def pixel_array(array: np.ndarray, column: str) -> np.ndarray:
    """An array column (N, H, W[, C]) of integers in 0..255 as uint8 (nested lists come back as int64)."""
    if array.ndim not in (3, 4) or array.dtype.kind not in "ui":
        raise ValueError(f"column {column!r} must hold images or (H, W[, C]) integer pixel arrays, got {array.dtype} "
                         f"{array.shape}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"column {column!r} holds pixel values outside 0..255")
    return array.astype(np.uint8, copy=False)


def load_hf(name: str, opts: dict[str, Any], image_size: int | None = None,
            channels: int | None = None) -> RawSplits:
    """Load hf:NAME into RawSplits (see the module docstring for the options)."""
    hf = import_hf_datasets()
    train, test = open_splits(hf, name, opts)
    image = pick_column(train, opts["image"], "Image", IMAGE_COLUMNS, "image")
    label = pick_column(train, opts["label"], "ClassLabel", LABEL_COLUMNS, "label")
    train_labels, test_labels, classes = read_labels(train, test, label)
    size = image_size
    train_images = read_images(hf, train, image, size, channels)
    size = size or train_images.shape[-1]  # the test split follows the train split's size and channels
    test_images = read_images(hf, test, image, size, channels or train_images.shape[1])
    return RawSplits(train_images=train_images, train_labels=train_labels, test_images=test_images,
                     test_labels=test_labels, classes=classes, origin=f"hf:{name}")


register_source(Source("hf", "hf:NAME[?image=COL&label=COL] — Hugging Face datasets: a hub name, local files, or a "
                       "save_to_disk folder", load_hf, options=OPTIONS))
