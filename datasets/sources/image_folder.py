"""`imagefolder:PATH`: train/<class>/* and test/<class>/* (or val/) in any format Pillow reads.

Images are decoded once, in parallel, converted to the card's mode (L or RGB) and size, and cached on disk as one
tensor file keyed by the folder's content (relative paths, sizes, mtimes) and the decode settings: a second load is
a tensor read, and a changed, added or removed file gives a new key.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tempbench.util import write_atomic

from ..locations import cache_dir, extract_archive, imagefolder_root, is_archive
from ..splits import RawSplits
from . import Source, register_source

TEST_SPLIT_NAMES = ("test", "val")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
CACHE_VERSION = 1  # bump when the decoding changes, so old caches are ignored
CHUNK = 512  # images per decode task: large enough to amortise the task overhead


def image_extensions() -> set[str]:
    """Lower-case file suffixes Pillow can open (".png", ".jpg", ...)."""
    from PIL import Image

    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def scan_split(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[Path], list[int], list[str]]:
    """Class names (sorted sub-folders, or `classes`), file paths, labels, and one "path size mtime" line per file."""
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise ValueError(f"no class folders in {folder} (expected {folder}/<class>/<image files>)")
    if classes is not None and set(found) - set(classes):
        raise ValueError(f"{folder} has classes that train/ lacks: {sorted(set(found) - set(classes))}")
    classes = classes if classes is not None else found
    suffixes = image_extensions()
    label_of = {name: i for i, name in enumerate(classes)}
    paths, labels, lines = [], [], []
    for name in found:
        entries = sorted((e for e in os.scandir(folder / name) if e.is_file() and not e.name.startswith(".")
                          and os.path.splitext(e.name)[1].lower() in suffixes), key=lambda e: e.name)
        if not entries:
            raise ValueError(f"class folder {folder / name} holds no images (formats Pillow reads)")
        for e in entries:
            st = e.stat()
            paths.append(Path(e.path))
            labels.append(label_of[name])
            lines.append(f"{folder.name}/{name}/{e.name}\t{st.st_size}\t{st.st_mtime_ns}")
    return classes, paths, labels, lines


def decode_image(item: Path | bytes, size: int, mode: str) -> np.ndarray:
    """One image file (path or encoded bytes) -> uint8 (size, size, channels): converted to `mode`, the shorter
    side resized to `size` (bicubic, antialiased), centre-cropped. An unreadable file is a ValueError naming it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = item if isinstance(item, Path) else f"<{len(item)} encoded bytes>"
    try:
        with Image.open(item if isinstance(item, Path) else io.BytesIO(item)) as img:
            img = img.convert(mode)
            if img.size != (size, size):
                img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot decode image {name}: {exc}") from None
    return array.reshape(size, size, -1)


def _decode_chunk(items: list[Path | bytes], size: int, mode: str) -> np.ndarray:
    return np.stack([decode_image(item, size, mode) for item in items])


def decode_images(paths: list[Path] | list[bytes], size: int, mode: str, workers: int | None = None) -> torch.Tensor:
    """Decode files -> uint8 (N, C, size, size), in worker processes when there are several chunks, with a
    progress bar and ETA on stderr then (a first load of Flickr8k decodes for minutes).

    Processes, not threads: for small images the per-file Python work dominates and holds the GIL.
    """
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = min(workers or os.cpu_count() or 1, len(chunks), 8)
    decode = partial(_decode_chunk, size=size, mode=mode)
    bar = tqdm(total=len(paths), desc="decoding images", unit="image", disable=len(chunks) < 2,
               leave=False, file=sys.stderr)
    if workers <= 1:
        arrays = [_counted(decode(chunk), bar) for chunk in chunks]
    else:
        with warnings.catch_warnings():
            # Python >= 3.12 warns that fork() in a threaded process may deadlock; the children only run Pillow and
            # numpy, and fork (unlike spawn) does not re-run the user's __main__.
            warnings.simplefilter("ignore", DeprecationWarning)
            with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
                arrays = [_counted(array, bar) for array in pool.map(decode, chunks)]
    bar.close()
    channels = 1 if mode == "L" else 3
    stacked = np.concatenate(arrays) if arrays else np.zeros((0, size, size, channels), np.uint8)
    return torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)))


def _counted(array: np.ndarray, bar: Any) -> np.ndarray:
    bar.update(len(array))
    return array


def _pool_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def image_defaults(item: Path | bytes) -> tuple[int, int]:
    """(shorter side, channels) of one image: the defaults when neither card nor user gives a size or channels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(item if isinstance(item, Path) else io.BytesIO(item)) as img:
            return min(img.size), 1 if img.mode in GRAY_MODES else 3
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        name = item if isinstance(item, Path) else "the first image"
        raise ValueError(f"cannot decode image {name}: {exc}") from None


def load_imagefolder(path: str | Path, options: dict | None = None, image_size: int | None = None,
                     channels: int | None = None) -> RawSplits:
    """Read PATH (a folder, or a .tar/.tar.gz archive that is extracted once into the cache) as an image folder.

    image_size and channels default to those of the first training image (channels: 1 for grayscale modes, else 3).
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if is_archive(root):
        root = extract_archive(root)
    root = imagefolder_root(root)
    train_dir = root / "train"
    test_dir = next((root / n for n in TEST_SPLIT_NAMES if (root / n).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise FileNotFoundError(f"{root} needs train/<class>/* and test/<class>/* (or val/<class>/*) sub-folders")
    classes, train_paths, train_labels, train_lines = scan_split(train_dir)
    _, test_paths, test_labels, test_lines = scan_split(test_dir, classes)
    default_size, default_channels = image_defaults(train_paths[0])
    size, channels = image_size or default_size, channels or default_channels
    mode = {1: "L", 3: "RGB"}[channels]
    key = hashlib.sha256("\n".join([f"v{CACHE_VERSION} {size} {mode}", *train_lines, *test_lines]).encode())
    cache_file = cache_dir() / "imagefolder" / f"{key.hexdigest()[:24]}.pt"
    tensors = read_cache(cache_file)
    if tensors is None or len(tensors["train"]) != len(train_paths) or len(tensors["test"]) != len(test_paths):
        images = decode_images(train_paths + test_paths, size, mode)  # one worker pool for both splits
        # clones: torch.save of a view writes its whole base storage, so each split would carry both
        tensors = {"train": images[:len(train_paths)].clone(), "test": images[len(train_paths):].clone()}
        write_cache(cache_file, tensors)
    return RawSplits(train_images=tensors["train"], train_labels=torch.tensor(train_labels, dtype=torch.int64),
                     test_images=tensors["test"], test_labels=torch.tensor(test_labels, dtype=torch.int64),
                     classes=classes, origin=str(root))


def read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached decoded tensors, or None when absent or unreadable (then they are decoded again)."""
    if not path.is_file():
        return None
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file fails in many ways; the cache is disposable, so rebuild it
        return None
    return tensors if isinstance(tensors, dict) and {"train", "test"} <= set(tensors) else None


def write_cache(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write atomically, so a concurrent reader never sees half a file."""
    write_atomic(path, lambda fh: torch.save(tensors, fh), text=False)


register_source(Source("imagefolder", "imagefolder:PATH — PATH/train/<class>/* and PATH/test/<class>/* (or val/), "
                       "or a .tar.gz of that", load_imagefolder))
