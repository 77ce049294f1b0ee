"""`load_dataset` for image_text cards and sources: a `CaptionDataset` (images at the card's size and channels,
images in no split left out, every argument checked before any image is read)."""

from __future__ import annotations

from typing import Any

import torch

from .captions import SPLIT_NAMES, CaptionDataset, RawCaptions
from .cards import Card
from .prepare import channel_stats, check_choices, read_card_source
from .sources import load_source
from .splits import to_channels, to_size


def load_caption_dataset(spec: str, card: Card | None, *, image_size: int | None, channels: int | None,
                         augment: str | None, long_tail: float | None = None, profile: str | None = None,
                         n_max: int | None = None, options: dict[str, Any] | None = None) -> CaptionDataset:
    """The image_text dataset `spec` (a card, already resolved, or a source string); no long-tail cut applies."""
    if long_tail is not None or profile is not None or n_max is not None:
        raise ValueError(f"{spec!r} is an image–caption dataset: it has no classes, so no long-tail cut "
                         "(long_tail, profile, n_max)")
    check_choices(image_size, channels, augment)
    size = image_size or (card.image_size if card else None)
    chans = channels or (card.channels if card else None)
    options = options or {}
    raw = read_card_source(card, options, size, chans) if card else load_source(spec, options, size, chans)
    if not isinstance(raw, RawCaptions):
        raise TypeError(f"{spec!r}: an image_text source must return RawCaptions, got {type(raw).__name__}")
    if card is not None:
        check_caption_card(card, raw)
    return assemble_captions(spec, card, raw, size, chans, augment)


def check_caption_card(card: Card, raw: RawCaptions) -> None:
    """A partial copy (images or captions missing) fails here, not as odd recalls."""
    for split, expected in card.splits.items():
        found = len(raw.splits[split])
        if found != expected:
            raise ValueError(f"dataset card {card.name!r} expects {expected} {split} images, {raw.origin} holds "
                             f"{found}")
    if card.captions_per_image is not None:
        per_image = torch.bincount(raw.caption_image, minlength=raw.images.shape[0])
        split_images = torch.cat([raw.splits[s] for s in SPLIT_NAMES])
        wrong = split_images[per_image[split_images] != card.captions_per_image]
        if len(wrong):
            raise ValueError(f"dataset card {card.name!r} expects {card.captions_per_image} captions per image; "
                             f"{len(wrong)} images of {raw.origin} differ")


def compact(raw: RawCaptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images in no split and their captions are dropped: (kept image rows (n,), each old row's new index (N,),
    -1 when dropped; kept caption rows (m,)), all int64."""
    keep = torch.sort(torch.cat([raw.splits[s] for s in SPLIT_NAMES])).values
    new_index = torch.full((raw.images.shape[0],), -1, dtype=torch.int64)
    new_index[keep] = torch.arange(len(keep))
    return keep, new_index, torch.nonzero(new_index[raw.caption_image] >= 0).flatten()


def assemble_captions(spec: str, card: Card | None, raw: RawCaptions, size: int | None, channels: int | None,
                      augment: str | None) -> CaptionDataset:
    """Bring images to size and channels, drop unsplit images, attach normalisation and the augmentation recipe."""
    keep, new_index, caption_rows = compact(raw)
    splits = {s: new_index[raw.splits[s]] for s in SPLIT_NAMES}
    images = raw.images if len(keep) == raw.images.shape[0] else raw.images[keep]
    if channels:
        images = to_channels(images, channels)
    size = size or min(images.shape[-2:])  # square images: the shorter side, as image folders do
    images = to_size(images, size).contiguous()
    if card is not None and card.channels == images.shape[1]:
        mean, std = card.mean, card.std
    else:  # no card (or another channel count): statistics of the training images
        mean, std = channel_stats(images[splits["train"]])
    ids = raw.image_ids or [str(i) for i in range(raw.images.shape[0])]
    return CaptionDataset(
        name=spec, source=card.source if card else spec, origin=raw.origin, images=images,
        captions=[raw.captions[i] for i in caption_rows.tolist()],
        caption_image=new_index[raw.caption_image[caption_rows]].contiguous(), splits=splits,
        mean=tuple(mean), std=tuple(std), augment=augment or (card.augment if card else raw.augment_hint),
        image_size=size, image_ids=[ids[i] for i in keep.tolist()])
