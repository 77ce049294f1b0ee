"""`torchvision:CIFAR10|CIFAR100`: CIFAR through torchvision, downloaded into the cache directory (or `root`) on
first use where the network allows; offline, the error says where to put a local copy instead."""

from __future__ import annotations

from typing import Any

import torch

from ..locations import cache_dir, data_dirs
from ..splits import RawSplits, images_from_numpy
from . import Source, register_source

TORCHVISION_SETS = ("CIFAR10", "CIFAR100")


def load_torchvision(name: str, options: dict[str, Any], image_size: int | None, channels: int | None) -> RawSplits:
    """CIFAR-10 or CIFAR-100 (`name`) as stored: uint8 (N, 3, 32, 32), the official 50,000 / 10,000 split. Download
    or read failures become one FileNotFoundError naming the offline alternatives (a card's error adds every local
    copy it looked for first)."""
    if name not in TORCHVISION_SETS:
        raise ValueError(f"unknown torchvision dataset {name!r}; valid: {', '.join(TORCHVISION_SETS)}")
    import torchvision  # heavy: imported when this source is used

    root = options["root"] or str(cache_dir() / "torchvision")
    cls = getattr(torchvision.datasets, name)
    try:
        train = cls(root=root, train=True, download=True)
        test = cls(root=root, train=False, download=True)
    except Exception as exc:
        raise FileNotFoundError(
            f"torchvision could not download or read {name} into {root} ({type(exc).__name__}: {exc}). "
            f"Offline, use a local copy instead: an image folder or its .tar.gz via imagefolder:PATH, or put "
            f"{name.lower()}-jpeg.tar.gz into one of the data directories ({', '.join(map(str, data_dirs()))}; "
            f"add more with TEMPBENCH_DATA)") from None
    return RawSplits(train_images=images_from_numpy(train.data), train_labels=torch.tensor(train.targets),
                     test_images=images_from_numpy(test.data), test_labels=torch.tensor(test.targets),
                     classes=list(train.classes), origin=f"torchvision.datasets.{name}({root})")


register_source(Source("torchvision", "torchvision:CIFAR10|CIFAR100 — downloads through torchvision where the "
                       "network allows", load_torchvision, options={"root": ""}))
