"""What image datasets (`build`) and image–caption datasets (`caption_build`) share on the way from a card or a source
string to tensors: the checks of the caller's choices, reading a card's first local copy (else its source), and the
normalisation statistics of a dataset that has no card. Both builders import this module; neither imports the other's
internals, so there is no import cycle between them.
"""

from __future__ import annotations

from typing import Any

import torch

from .captions import RawCaptions
from .cards import AUGMENT_RECIPES, Card
from .locations import find_local
from .sources import load_source, parse_source
from .splits import RawSplits


def check_choices(image_size: int | None, channels: int | None, augment: str | None) -> None:
    """ValueError for an image side that is not a positive int, channels other than 1 or 3, or an unknown
    augmentation recipe; None means "the card's (or the source's) own" and always passes."""
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if augment is not None and augment not in AUGMENT_RECIPES:
        raise ValueError(f"unknown augment recipe {augment!r}; valid: {', '.join(AUGMENT_RECIPES)}")


def read_card_source(card: Card, options: dict[str, Any], size: int | None,
                     channels: int | None) -> RawSplits | RawCaptions:
    """The card's first local copy found in the data directories, else its source; errors name every place tried.

    Local copies come first so that a benchmark machine never downloads what `../shared/data` (or TEMPBENCH_DATA)
    already holds; the source is the fallback for a fresh machine with network access.
    """
    looked: list[str] = []
    for local in card.local:
        source, relative, query = parse_source(local)
        path = find_local(relative, looked)
        if path is not None:
            return load_source(f"{source.name}:{path}", {**query, **options}, size, channels)
    try:
        return load_source(card.source, options, size, channels)
    except FileNotFoundError as exc:
        places = "; ".join(looked) or "none listed"
        raise FileNotFoundError(f"dataset card {card.name!r}: no local copy ({', '.join(card.local) or 'none'}) "
                                f"found at: {places}; then {card.source}: {exc}") from None


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of uint8 (N, C, H, W) images scaled to [0, 1], each rounded to 4 decimals.

    Sums and sums of squares are accumulated in float64, `chunk` images at a time: a float copy of a whole split
    would cost 8× its uint8 memory. Four decimals is the precision the cards give their own mean/std in.
    """
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = max(1, images.numel() // images.shape[1])
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()  # clamp: a constant channel rounds below 0
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())
