"""Dataset cards, sources and long-tail builders.

    from tempbench.datasets import load_dataset, list_cards, get_card, class_groups
    ds = load_dataset("cifar10-lt", seed=0)               # a card, or any source string:
    ds = load_dataset("imagefolder:PATH", long_tail=0.01, image_size=32)

Sources: sklearn:digits, torchvision:CIFAR10|CIFAR100, imagefolder:PATH, hf:NAME, idx:PATH, one module each in
`sources/`, registered like strategies (`register_source`, entry-point group `tempbench.sources`).

Image–caption data (CLIP-style runs): the "flickr8k" card and the tsv:PATH, wds:PATTERN and hf:NAME?caption=COL
sources give a `CaptionDataset`; `dataset_pairing(spec)` tells "views" from "image_text" without loading anything.
"""

from .build import ImageDataset, dataset_pairing, load_dataset
from .captions import CaptionDataset, RawCaptions
from .cards import Card, get_card, list_cards
from .locations import cache_dir, data_dirs
from .long_tail import LongTailCut, class_groups, indices_hash, long_tail_indices, profile_counts
from .sources import (
    Source,
    get_source,
    list_sources,
    load_source,
    parse_source,
    register_caption_variant,
    register_source,
)
from .splits import RawSplits

__all__ = [
    "CaptionDataset",
    "Card",
    "ImageDataset",
    "LongTailCut",
    "RawCaptions",
    "RawSplits",
    "Source",
    "cache_dir",
    "class_groups",
    "data_dirs",
    "dataset_pairing",
    "get_card",
    "get_source",
    "indices_hash",
    "list_cards",
    "list_sources",
    "load_dataset",
    "load_source",
    "long_tail_indices",
    "parse_source",
    "profile_counts",
    "register_caption_variant",
    "register_source",
]
