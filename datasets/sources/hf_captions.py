"""`hf:NAME?caption=COL`: image–caption datasets through Hugging Face `datasets` (the image_text variant of `hf:`,
chosen because `caption` is set). NAME is a hub name, local data files or a `save_to_disk` folder.

Options: image (default: the first Image column, else "image"/"img"); caption: one column, or several
comma-separated (`caption_0,caption_1,...`, one caption each); a list column gives a row's captions, a string
column one caption per row. image_id: a column grouping rows of one image (one row per caption); without it, rows
with identical encoded images (or file paths) are grouped. Splits: a DatasetDict's splits, or a split_column whose
values name each row's split (Flickr30k copies on the hub keep "train"/"val"/"test" in a `split` column); train,
val, test name them (comma-separated lists allowed, e.g. train=train,restval; default train, the first of
validation/val/valid/dev, test). A split that is missing is carved from the training images: test_fraction, then
val_fraction of them, chosen at random with split_seed. Images are decoded on each load (hub datasets keep their own
Arrow cache of the encoded files); only Image columns are read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ..captions import VAL_NAMES, RawCaptions, contiguous_splits
from . import Source, register_caption_variant
from .huggingface import IMAGE_COLUMNS, import_hf_datasets, pick_column
from .image_folder import decode_images, image_defaults

OPTIONS = {"image": None, "caption": None, "image_id": None, "split_column": None, "train": "train", "val": None,
           "test": None, "config": None, "val_fraction": 0.1, "test_fraction": 0.1, "split_seed": 0}
DEFAULT_NAMES = {"train": ("train",), "val": VAL_NAMES, "test": ("test",)}
# one split's images: (encoded image or path, its captions, its id)
Group = tuple[bytes | Path, list[str], str]


def open_hf(hf: ModuleType, name: str, config: str | None) -> Any:
    """A Dataset or DatasetDict from a save_to_disk folder, local files or the hub (offline: a clear error)."""
    path = Path(name).expanduser()
    if path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "state.json")):
        return hf.load_from_disk(str(path))
    try:
        return hf.load_dataset(name, config)
    except (ConnectionError, OSError) as exc:  # the hub's not-found errors are OSErrors too
        raise FileNotFoundError(f"Hugging Face datasets could not load {name!r} ({type(exc).__name__}: {exc}); "
                                f"offline, point hf: at a save_to_disk folder or local data files") from None


def wanted_names(opts: dict[str, Any], split: str, present: list[str]) -> list[str]:
    """The names of `split` among `present` (DatasetDict splits or split-column values): the option's list, else
    the first default name present; [] when none is."""
    if opts[split]:
        names = [n.strip() for n in str(opts[split]).split(",") if n.strip()]
        absent = [n for n in names if n not in present]
        if absent:
            raise ValueError(f"hf: no split {absent} for {split}; present: {present}")
        return names
    return next(([n] for n in DEFAULT_NAMES[split] if n in present), [])


def split_parts(hf: ModuleType, obj: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """{"train": Dataset, "val": Dataset | None, "test": Dataset | None}: by DatasetDict split or split column."""
    if opts["split_column"]:
        ds = obj if isinstance(obj, hf.Dataset) else hf.concatenate_datasets([obj[s] for s in obj])
        if opts["split_column"] not in ds.features:
            raise ValueError(f"hf: no split column {opts['split_column']!r}; columns: {list(ds.features)}")
        values = np.asarray([str(v) for v in ds[opts["split_column"]]])
        present = sorted(set(values.tolist()))
        chosen = {s: wanted_names(opts, s, present) for s in DEFAULT_NAMES}
        return {s: ds.select(np.flatnonzero(np.isin(values, names))) if names else None
                for s, names in chosen.items()}
    if isinstance(obj, hf.Dataset):
        return {"train": obj, "val": None, "test": None}
    present = list(obj)
    chosen = {s: wanted_names(opts, s, present) for s in DEFAULT_NAMES}
    if not chosen["train"]:
        raise ValueError(f"hf: no training split {opts['train']!r}; splits: {present}")
    return {s: (hf.concatenate_datasets([obj[n] for n in names]) if len(names) > 1 else obj[names[0]])
            if names else None for s, names in chosen.items()}


def row_captions(ds: Any, columns: list[str]) -> list[list[str]]:
    """Each row's captions: the values of several string columns, or one list/string column."""
    absent = [c for c in columns if c not in ds.features]
    if absent:
        raise ValueError(f"the Hugging Face dataset has no caption column {absent}; columns: {list(ds.features)}")
    values = [ds[c] for c in columns]
    rows: list[list[str]] = []
    for cells in zip(*values):
        caps = [str(x) for cell in cells for x in (cell if isinstance(cell, (list, tuple)) else [cell])]
        rows.append([c.strip() for c in caps if c is not None and c.strip()])
    return rows


def group_images(hf: ModuleType, ds: Any, image: str, captions: list[str], image_id: str | None) -> list[Group]:
    """One split's rows -> its images in first-appearance order, each with all its captions."""
    if type(ds.features[image]).__name__ != "Image":
        raise ValueError(f"hf: column {image!r} must be an Image feature for image–caption data")
    cells = ds.cast_column(image, hf.Image(decode=False))[image]
    items = [c["bytes"] if c.get("bytes") is not None else Path(c["path"]) for c in cells]
    if image_id is not None and image_id not in ds.features:
        raise ValueError(f"hf: no image_id column {image_id!r}; columns: {list(ds.features)}")
    keys = ([str(v) for v in ds[image_id]] if image_id else
            [hashlib.sha1(x).hexdigest() if isinstance(x, bytes) else str(x) for x in items])
    groups: dict[str, Group] = {}
    for item, key, caps in zip(items, keys, row_captions(ds, captions)):
        groups.setdefault(key, (item, [], key))[1].extend(caps)
    return list(groups.values())


def carve(groups: list[Group], fraction: float, seed: int) -> tuple[list[Group], list[Group]]:
    """(kept, carved): a random `fraction` of the images (at least one when fraction > 0), order kept."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"split fractions must be in [0, 1), got {fraction}")
    n = len(groups)
    take = max(1, round(fraction * n)) if fraction > 0 and n > 1 else 0
    chosen = set(np.random.default_rng(seed).permutation(n)[:take].tolist())
    return [g for i, g in enumerate(groups) if i not in chosen], [g for i, g in enumerate(groups) if i in chosen]


def load_hf_captions(name: str, opts: dict[str, Any], image_size: int | None = None,
                     channels: int | None = None) -> RawCaptions:
    """Load hf:NAME?caption=COL into RawCaptions (see the module docstring for the options)."""
    hf = import_hf_datasets()
    parts = split_parts(hf, open_hf(hf, name, opts["config"]), opts)
    image = pick_column(parts["train"], opts["image"], "Image", IMAGE_COLUMNS, "image")
    columns = [c.strip() for c in str(opts["caption"]).split(",") if c.strip()]
    groups = {s: group_images(hf, ds, image, columns, opts["image_id"]) if ds is not None else None
              for s, ds in parts.items()}
    seed = int(opts["split_seed"])
    for split, fraction in (("test", float(opts["test_fraction"])), ("val", float(opts["val_fraction"]))):
        if groups[split] is None:  # carved from the training images, seeded
            groups["train"], groups[split] = carve(groups["train"], fraction, seed)
    ordered = [g for s in ("train", "val", "test") for g in groups[s]]
    if not ordered:
        raise ValueError(f"hf:{name} holds no images")
    default_size, default_channels = image_defaults(ordered[0][0])
    mode = "L" if (channels or default_channels) == 1 else "RGB"
    images = decode_images([g[0] for g in ordered], image_size or default_size, mode)
    owner = [i for i, g in enumerate(ordered) for _ in g[1]]
    return RawCaptions(images=images, captions=[c for g in ordered for c in g[1]],
                       caption_image=torch.tensor(owner, dtype=torch.int64),
                       splits=contiguous_splits({s: len(groups[s]) for s in groups}), origin=f"hf:{name}",
                       image_ids=[g[2] for g in ordered])


register_caption_variant(Source("hf", "hf:NAME?caption=COL[&image=COL&image_id=COL&split_column=COL] — image–caption "
                                "data through Hugging Face datasets", load_hf_captions, options=OPTIONS,
                                pairing="image_text"))
