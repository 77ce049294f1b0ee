"""Image–caption data: `RawCaptions` (what an image–caption source returns) and `CaptionDataset` (what a CLIP-style
run gets), plus the on-disk cache of decoded images that the caption sources share.

One image has one or more captions; a training *pair* is one caption with its image, so pair j of a run is caption
`ds.caption_indices("train")[j]` and its image `ds.caption_image[that caption]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tempbench.util import write_atomic

SPLIT_NAMES = ("train", "val", "test")
VAL_NAMES = ("validation", "val", "valid", "dev")  # what hub datasets and split files call the validation split


def check_caption_parts(images: torch.Tensor, captions: list[str], caption_image: torch.Tensor,
                        splits: dict[str, torch.Tensor], origin: str) -> None:
    """ValueError naming `origin` unless: uint8 (N, C, H, W) images, one int64 image index per caption, the three
    splits sorted, disjoint and in range, train and test non-empty, every split image with at least one caption."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"{origin}: images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    n = images.shape[0]
    if caption_image.dtype != torch.int64 or caption_image.shape != (len(captions),):
        raise ValueError(f"{origin}: caption_image must be int64 with one entry per caption ({len(captions)}), got "
                         f"{caption_image.dtype} {tuple(caption_image.shape)}")
    if len(captions) and (int(caption_image.min()) < 0 or int(caption_image.max()) >= n):
        raise ValueError(f"{origin}: caption_image outside [0, {n})")
    if sorted(splits) != sorted(SPLIT_NAMES):
        raise ValueError(f"{origin}: splits must be exactly {list(SPLIT_NAMES)}, got {sorted(splits)}")
    seen = torch.zeros(n, dtype=torch.bool)
    has_caption = torch.zeros(n, dtype=torch.bool)
    has_caption[caption_image] = True
    for name in SPLIT_NAMES:
        idx = splits[name]
        if idx.dtype != torch.int64 or idx.ndim != 1:
            raise ValueError(f"{origin}: split {name!r} must be a 1-d int64 tensor of image indices")
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n or bool((idx[1:] <= idx[:-1]).any())):
            raise ValueError(f"{origin}: split {name!r} must hold sorted, distinct image indices in [0, {n})")
        if bool(seen[idx].any()):
            raise ValueError(f"{origin}: split {name!r} shares images with an earlier split")
        if not bool(has_caption[idx].all()):
            raise ValueError(f"{origin}: {int((~has_caption[idx]).sum())} {name} images have no caption")
        seen[idx] = True
    for name in ("train", "test"):
        if len(splits[name]) == 0:
            raise ValueError(f"{origin}: the {name} split is empty")


@dataclass
class RawCaptions:
    """An image–caption source's data: uint8 (N_img, C, H, W) images, N_cap captions, caption_image (N_cap,) int64
    (the image each caption describes), splits {"train", "val", "test"} -> sorted int64 image indices (val may be
    empty; images in no split are dropped when the dataset is assembled). image_ids: a name per image (file stem,
    sample key, row number) for messages and summaries; origin: where it was read from."""

    images: torch.Tensor
    captions: list[str]
    caption_image: torch.Tensor
    splits: dict[str, torch.Tensor]
    origin: str
    image_ids: list[str] | None = None
    augment_hint: str = "simclr"

    def __post_init__(self) -> None:
        check_caption_parts(self.images, self.captions, self.caption_image, self.splits, self.origin)
        if self.image_ids is not None and len(self.image_ids) != self.images.shape[0]:
            raise ValueError(f"{self.origin}: {len(self.image_ids)} image ids for {self.images.shape[0]} images")


@dataclass
class CaptionDataset:
    """An image–caption dataset ready for a CLIP-style run (uint8 CPU tensors; every split in one image tensor).

    images: (N_img, C, S, S) uint8, contiguous; captions: N_cap strings; caption_image: (N_cap,) int64 index into
    images; splits: "train"/"val"/"test" -> sorted (n,) int64 image indices (disjoint; every image is in one split;
    val may be empty). mean/std: per-channel normalisation of [0, 1] images; augment: the card's image recipe.
    """

    name: str
    source: str
    origin: str
    images: torch.Tensor
    captions: list[str]
    caption_image: torch.Tensor
    splits: dict[str, torch.Tensor]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str
    image_size: int
    image_ids: list[str] = field(default_factory=list)
    pairing: str = "image_text"

    def __post_init__(self) -> None:
        check_caption_parts(self.images, self.captions, self.caption_image, self.splits, self.name)

    @property
    def channels(self) -> int:
        """1 (grayscale) or 3 (RGB), as the images are stored."""
        return int(self.images.shape[1])

    @property
    def num_images(self) -> int:
        """N_img over all splits."""
        return int(self.images.shape[0])

    @property
    def num_captions(self) -> int:
        """N_cap over all splits (a training pair is one caption, so this also bounds the pairs)."""
        return len(self.captions)

    def _in_split(self, split: str) -> torch.Tensor:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLIT_NAMES)}")
        member = torch.zeros(self.num_images, dtype=torch.bool)
        member[self.splits[split]] = True
        return member

    def caption_indices(self, split: str) -> torch.Tensor:
        """(M,) int64 sorted indices of the captions whose image is in `split` (the split's pairs, in order)."""
        return torch.nonzero(self._in_split(split)[self.caption_image]).flatten()

    def split_pairs(self, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What retrieval on `split` needs: (image indices (n,), caption indices (M,), local (M,) int64 — each
        caption's image as a row of the split's n images, i.e. images[splits[split]][local[j]])."""
        images, captions = self.splits[split], self.caption_indices(split)
        return images, captions, torch.searchsorted(images, self.caption_image[captions])

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: images and captions per split, captions per image, normalisation."""
        per_image = torch.bincount(self.caption_image, minlength=self.num_images)
        counts = {s: {"images": len(self.splits[s]), "captions": len(self.caption_indices(s))} for s in SPLIT_NAMES}
        return {"name": self.name, "source": self.source, "origin": self.origin, "pairing": self.pairing,
                "image_size": self.image_size, "channels": self.channels, "num_images": self.num_images,
                "num_captions": self.num_captions, "splits": counts,
                "captions_per_image": {"min": int(per_image.min()), "max": int(per_image.max())},
                "mean": list(self.mean), "std": list(self.std), "augment": self.augment}


def contiguous_splits(sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """Images stored split after split (train, val, test): {split: arange over its block}."""
    out, start = {}, 0
    for name in SPLIT_NAMES:
        out[name] = torch.arange(start, start + sizes.get(name, 0), dtype=torch.int64)
        start += sizes.get(name, 0)
    return out


def cached_tensors(path: Path, build: Callable[[], dict[str, Any]], check: Callable[[dict[str, Any]], bool]) -> Any:
    """The dict saved at `path` when it loads and passes `check`, else build() written there atomically.

    The cache is disposable: a truncated, foreign or stale file is rebuilt, never an error.
    """
    if path.is_file():
        try:
            found = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a half-written or foreign file fails in many ways; rebuild it
            found = None
        if isinstance(found, dict) and check(found):
            return found
    built = build()
    write_atomic(path, lambda fh: torch.save(built, fh), text=False)
    return built
