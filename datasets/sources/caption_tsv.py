"""`tsv:PATH`: an image–caption folder with a caption table and split lists (the layout of the shared Flickr8k copy).

PATH is a folder, or a .tar/.tar.gz archive extracted once into the cache, holding

    images/<image_id>.<ext>       any format Pillow reads
    captions.tsv                  UTF-8, tab-separated, header `image_id<TAB>caption_index<TAB>caption`
    splits/train.txt, test.txt    one image id a line; splits/val.txt (or dev.txt) optional

Images listed in no split file (Flickr8k's splits/unsplit.txt) are left out with their captions. Images are stored
split after split (train, val, test), each in its split file's order; captions image by image, by caption_index.
Decoding happens once: the images are cached as one tensor file keyed by the image files (ids, sizes, mtimes) and the
decode settings, as image folders are, so a second load is a tensor read plus parsing the caption table.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import torch

from ..captions import RawCaptions, cached_tensors, contiguous_splits
from ..locations import cache_dir, extract_archive, is_archive
from . import Source, register_source
from .image_folder import decode_images, image_defaults, image_extensions

CACHE_VERSION = 1  # bump when decoding changes, so old caches are ignored
HEADER = ["image_id", "caption_index", "caption"]
SPLIT_FILES = {"train": ("train.txt",), "val": ("val.txt", "dev.txt"), "test": ("test.txt",)}


def caption_root(folder: Path) -> Path:
    """The folder holding captions.tsv, or its single sub-folder that does (archives often wrap everything)."""
    if (folder / "captions.tsv").is_file():
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subs) == 1 and (subs[0] / "captions.tsv").is_file():
        return subs[0]
    raise FileNotFoundError(f"{folder} needs images/, captions.tsv and splits/{{train,test}}.txt (tsv: layout)")


def read_split_ids(root: Path) -> dict[str, list[str]]:
    """{split: image ids in file order}; val is empty when no val/dev file exists, train and test are required."""
    out: dict[str, list[str]] = {}
    for split, names in SPLIT_FILES.items():
        path = next((root / "splits" / n for n in names if (root / "splits" / n).is_file()), None)
        if path is None and split != "val":
            raise FileNotFoundError(f"{root / 'splits'} has no {' or '.join(names)}")
        lines = path.read_text(encoding="utf-8").splitlines() if path else []
        out[split] = [line.strip() for line in lines if line.strip()]
    return out


def read_caption_table(path: Path) -> dict[str, list[tuple[int, str]]]:
    """image_id -> [(caption_index, caption), ...] from the tab-separated table (no quoting: captions hold quotes)."""
    table: dict[str, list[tuple[int, str]]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None)
        if header is None or [h.strip().lower() for h in header] != HEADER:
            raise ValueError(f"{path}: the first line must be the header {'<TAB>'.join(HEADER)}, got {header!r}")
        for line, row in enumerate(rows, start=2):
            if len(row) != 3 or not row[1].strip().isdigit():
                raise ValueError(f"{path}:{line}: expected image_id<TAB>caption_index<TAB>caption, got {row!r}")
            table.setdefault(row[0].strip(), []).append((int(row[1]), row[2].strip()))
    return table


def scan_images(folder: Path) -> dict[str, os.DirEntry[str]]:
    """image id (file stem) -> its directory entry, for the files Pillow can read."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no images/ folder in {folder.parent}")
    suffixes = image_extensions()
    return {os.path.splitext(e.name)[0]: e for e in os.scandir(folder)
            if e.is_file() and not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in suffixes}


def load_tsv(path: str, options: dict | None = None, image_size: int | None = None,
             channels: int | None = None) -> RawCaptions:
    """Read PATH (see the module docstring); image_size/channels default to the first image's."""
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"caption folder {root} does not exist")
    root = caption_root(extract_archive(root) if is_archive(root) else root)
    split_ids = read_split_ids(root)
    table = read_caption_table(root / "captions.tsv")
    files = scan_images(root / "images")
    ids = [i for split in ("train", "val", "test") for i in split_ids[split]]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{root}: an image id is listed twice in the split files")
    missing = [i for i in ids if i not in files][:5] or [i for i in ids if i not in table][:5]
    if missing:
        raise ValueError(f"{root}: split images without an image file or a caption, e.g. {missing}")
    entries = [files[i] for i in ids]
    first = Path(entries[0].path)
    default_size, default_channels = image_defaults(first)
    size, mode = image_size or default_size, "L" if (channels or default_channels) == 1 else "RGB"
    lines = [f"v{CACHE_VERSION} {size} {mode}", *(f"{i}\t{e.stat().st_size}\t{e.stat().st_mtime_ns}"
                                                   for i, e in zip(ids, entries))]
    key = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:24]
    tensors = cached_tensors(cache_dir() / "tsv" / f"{key}.pt",
                             lambda: {"images": decode_images([Path(e.path) for e in entries], size, mode)},
                             lambda t: isinstance(t.get("images"), torch.Tensor) and len(t["images"]) == len(ids))
    captions, owner = [], []
    for position, image_id in enumerate(ids):
        for _, text in sorted(table[image_id]):
            captions.append(text)
            owner.append(position)
    return RawCaptions(images=tensors["images"], captions=captions,
                       caption_image=torch.tensor(owner, dtype=torch.int64),
                       splits=contiguous_splits({s: len(v) for s, v in split_ids.items()}), origin=str(root),
                       image_ids=ids)


register_source(Source("tsv", "tsv:PATH — image–caption folder (or .tar.gz): images/<id>.<ext>, captions.tsv "
                       "(image_id, caption_index, caption), splits/{train,val,test}.txt", load_tsv,
                       pairing="image_text"))
