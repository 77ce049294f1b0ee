"""Dataset cards, sources and long-tail builders.

    from tempbench.datasets import load_dataset, list_cards, get_card, class_groups
    ds = load_dataset("cifar10-lt", seed=0)               # a card, or any source string:
    ds = load_dataset("imagefolder:PATH", long_tail=0.01, image_size=32)

Sources: sklearn:digits, torchvision:CIFAR10|CIFAR100, imagefolder:PATH, hf:NAME, idx:PATH (see `sources.py`).
"""

from .build import ImageDataset, load_dataset
from .cards import Card, get_card, list_cards
from .locations import cache_dir, data_dirs
from .long_tail import LongTailCut, class_groups, indices_hash, long_tail_indices, profile_counts
from .sources import SOURCE_KINDS, load_source, parse_source
from .splits import RawSplits

__all__ = [
    "SOURCE_KINDS",
    "Card",
    "ImageDataset",
    "LongTailCut",
    "RawSplits",
    "cache_dir",
    "class_groups",
    "data_dirs",
    "get_card",
    "indices_hash",
    "list_cards",
    "load_dataset",
    "load_source",
    "long_tail_indices",
    "parse_source",
    "profile_counts",
]
