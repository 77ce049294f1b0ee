"""`wds:PATTERN`: WebDataset tar shards of image–caption samples, the layout img2dataset writes for CC3M, CC12M and
LAION (`<key>.jpg` + `<key>.txt` per sample, among other members that are ignored).

    wds:/data/cc3m/train-{000000..000331}.tar?val=/data/cc3m/val-{000000..000001}.tar

PATTERN and the val / test options are local shard paths with brace ranges ({000000..000009}) or lists ({a,b}).
A split without its own pattern is carved from the training shards by the sample key: a sample with
u = sha256(key) / 2^256 below test_fraction goes to test, then the next val_fraction of [0, 1) to val, so the rule
depends neither on shard order nor on how many shards exist. Options: image (member extensions tried in order,
default jpg;jpeg;png;webp), caption (default txt, UTF-8), limit (at most that many samples read per pattern, 0: all).
A sample missing its image or caption is an error naming its key.

Memory: today every selected sample is read, decoded to uint8 (N, C, S, S) and cached as one tensor file, with all
captions in memory: ~12 KB an image at 64 px, so ~40 GB for CC3M's 3.3 M pairs. At that scale stream the shards
(webdataset.WebDataset in a DataLoader) instead; `limit` takes a prefix for quick runs. The shards are read through
webdataset's tar iterators (`tar_file_expander`, `group_by_keys`) on files this module opens and closes itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from tempbench.util import MissingExtra

from ..captions import RawCaptions, cached_tensors, contiguous_splits
from ..locations import cache_dir
from . import Source, register_source
from .image_folder import decode_images, image_defaults

CACHE_VERSION = 1
OPTIONS = {"val": None, "test": None, "image": "jpg;jpeg;png;webp", "caption": "txt", "val_fraction": 0.05,
           "test_fraction": 0.05, "limit": 0}


def expand_shards(pattern: str) -> list[Path]:
    """The shard files a brace pattern names, in order; FileNotFoundError listing the first missing ones."""
    try:
        from braceexpand import braceexpand  # a dependency of webdataset (the `text` extra)
    except ImportError as exc:
        raise missing_text_extra(exc) from exc

    paths = [Path(p).expanduser() for p in braceexpand(pattern)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"wds: {len(missing)} of {len(paths)} shards of {pattern!r} not found, e.g. "
                                f"{missing[:3]}")
    return paths


def missing_text_extra(exc: ImportError) -> MissingExtra:
    """The one-line error for a failed import of webdataset (or braceexpand, which it brings): the `text` extra."""
    return MissingExtra("the wds: source", "text", missing=(exc.name or "webdataset").split(".")[0],
                        verb="needs")


def read_shards(paths: list[Path], image_exts: list[str], caption_ext: str, limit: int) -> list[tuple[str, bytes, str]]:
    """(key, encoded image, caption) of every sample of the shards in order (at most `limit` when > 0)."""
    try:
        from webdataset.tariterators import group_by_keys, tar_file_expander
    except ImportError as exc:
        raise missing_text_extra(exc) from exc
    out: list[tuple[str, bytes, str]] = []
    for path in paths:
        with path.open("rb") as fh:  # opened here so that it is closed here (webdataset's own opener leaks it)
            for sample in group_by_keys(tar_file_expander([{"url": str(path), "stream": fh}])):
                out.append(parse_sample(sample, image_exts, caption_ext, path))
                if 0 < limit <= len(out):
                    return out
    return out


def parse_sample(sample: dict[str, Any], image_exts: list[str], caption_ext: str,
                 path: Path) -> tuple[str, bytes, str]:
    """(key, encoded image, caption) of one sample grouped by webdataset (members keyed by extension): the first
    image extension present wins; a sample lacking an image or a caption is a ValueError naming it and its shard."""
    key = sample["__key__"]
    image = next((sample[e] for e in image_exts if e in sample), None)
    if image is None or caption_ext not in sample:
        lacks = f"an image ({'/'.join(image_exts)})" if image is None else f"a .{caption_ext} caption"
        members = sorted(k for k in sample if not k.startswith("__"))
        raise ValueError(f"wds: sample {key!r} in {path} lacks {lacks}; members: {members}")
    return key, image, sample[caption_ext].decode("utf-8").strip()


def key_position(key: str) -> float:
    """u in [0, 1) from the sample key alone (the carving rule of the module docstring)."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) / 2.0**256


def assign_splits(train: list, val: list | None, test: list | None, val_fraction: float,
                  test_fraction: float) -> dict[str, list]:
    """{split: samples}: the given val/test shards, else samples carved from train by `key_position`."""
    for f in (val_fraction, test_fraction):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"wds: split fractions must be in [0, 1), got {f}")
    test_cut = test_fraction if test is None else 0.0
    val_cut = test_cut + (val_fraction if val is None else 0.0)
    u = [key_position(s[0]) for s in train]
    return {"train": [s for s, x in zip(train, u) if x >= val_cut],
            "val": val if val is not None else [s for s, x in zip(train, u) if test_cut <= x < val_cut],
            "test": test if test is not None else [s for s, x in zip(train, u) if x < test_cut]}


def load_wds(pattern: str, opts: dict[str, Any], image_size: int | None = None,
             channels: int | None = None) -> RawCaptions:
    """Read the shards of the train pattern (and of val / test) into RawCaptions, decoded once and cached."""
    shards = {"train": expand_shards(pattern),
              **{s: expand_shards(opts[s]) for s in ("val", "test") if opts[s]}}
    image_exts = [e.strip().lower().lstrip(".") for e in str(opts["image"]).split(";") if e.strip()]
    caption_ext, limit = str(opts["caption"]).lstrip("."), int(opts["limit"])
    stats = [f"{s} {p} {p.stat().st_size} {p.stat().st_mtime_ns}" for s, ps in shards.items() for p in ps]
    settings = f"v{CACHE_VERSION} {image_size} {channels} {image_exts} {caption_ext} {limit} " \
               f"{opts['val_fraction']} {opts['test_fraction']}"
    key = hashlib.sha256("\n".join([settings, *stats]).encode()).hexdigest()[:24]

    def build() -> dict[str, Any]:
        read = {s: read_shards(ps, image_exts, caption_ext, limit) for s, ps in shards.items()}
        parts = assign_splits(read["train"], read.get("val"), read.get("test"), float(opts["val_fraction"]),
                              float(opts["test_fraction"]))
        ordered = [x for s in ("train", "val", "test") for x in parts[s]]
        if not ordered:
            raise ValueError(f"wds:{pattern}: the shards hold no samples")
        size, default_channels = image_defaults(ordered[0][1])
        mode = "L" if (channels or default_channels) == 1 else "RGB"
        return {"images": decode_images([x[1] for x in ordered], image_size or size, mode),
                "captions": [x[2] for x in ordered], "keys": [x[0] for x in ordered],
                "sizes": [len(parts[s]) for s in ("train", "val", "test")]}

    data = cached_tensors(cache_dir() / "wds" / f"{key}.pt", build,
                          lambda t: {"images", "captions", "keys", "sizes"} <= set(t))
    sizes = dict(zip(("train", "val", "test"), data["sizes"]))
    return RawCaptions(images=data["images"], captions=list(data["captions"]),
                       caption_image=torch.arange(len(data["captions"]), dtype=torch.int64),
                       splits=contiguous_splits(sizes), origin=f"wds:{pattern}", image_ids=list(data["keys"]))


register_source(Source("wds", "wds:PATTERN[?val=PATTERN&test=PATTERN] — WebDataset shards of .jpg + .txt samples "
                       "(img2dataset layout; brace patterns)", load_wds, options=OPTIONS, pairing="image_text"))
