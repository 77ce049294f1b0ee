"""`sklearn:digits`: scikit-learn's `load_digits` (1,797 8×8 grayscale digits), shipped inside scikit-learn, so it
needs no files and no network: the embedded default."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..splits import RawSplits, images_from_numpy
from . import Source, register_source


def load_sklearn(name: str, options: dict[str, Any], image_size: int | None, channels: int | None) -> RawSplits:
    """Values 0..16 scaled to 0..255; a stratified train/test split fixed by `split_seed`."""
    from sklearn.datasets import load_digits  # imported when used: `import tempbench.datasets` stays light
    from sklearn.model_selection import train_test_split

    if name != "digits":
        raise ValueError(f"unknown scikit-learn dataset {name!r}; valid: digits")
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    train, test = train_test_split(np.arange(len(images)), test_size=float(options["test_fraction"]),
                                   stratify=digits.target, random_state=int(options["split_seed"]))
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return RawSplits(train_images=images_from_numpy(images[train]), train_labels=labels[train],
                     test_images=images_from_numpy(images[test]), test_labels=labels[test],
                     classes=[str(c) for c in range(10)], origin="sklearn.datasets.load_digits",
                     augment_hint="digits")


register_source(Source("sklearn", "sklearn:digits — scikit-learn's load_digits, 8x8 grayscale, no files needed",
                       load_sklearn, options={"test_fraction": 0.2, "split_seed": 0}))
