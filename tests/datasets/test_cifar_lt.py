"""CIFAR-10-LT from the shared JPEG copy of CIFAR-10: the exact long-tail counts and a balanced test set.

The first run extracts the archive and decodes 60,000 images into the cache (TEMPBENCH_CACHE, default
~/.cache/tempbench; tens of seconds); later runs read the cached tensors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tempbench.datasets import ImageDataset, load_dataset

SHARED = Path(__file__).resolve().parents[2].parent / "shared/data/cifar10-jpeg.tar.gz"
CIFAR10_LT = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]

pytestmark = pytest.mark.skipif(not SHARED.is_file(), reason=f"shared CIFAR-10 copy absent ({SHARED})")


@pytest.fixture(scope="module")
def cifar10_lt() -> ImageDataset:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEMPBENCH_DATA", str(SHARED.parent))
        return load_dataset("cifar10-lt")


def test_cifar10_lt_counts(cifar10_lt: ImageDataset) -> None:
    ds = cifar10_lt
    assert ds.class_counts == CIFAR10_LT and len(ds.train_labels) == 12406
    assert torch.bincount(ds.train_labels).tolist() == CIFAR10_LT
    assert ds.train_images.shape == (12406, 3, 32, 32) and ds.train_images.dtype == torch.uint8
    assert ds.classes[:3] == ["airplane", "automobile", "bird"] and ds.classes[-1] == "truck"
    assert ds.long_tail == {"profile": "exp", "imbalance_factor": 0.01, "n_max": 5000, "seed": 0}
    assert "cifar10-jpeg" in ds.origin


def test_cifar10_lt_test_split_is_balanced(cifar10_lt: ImageDataset) -> None:
    assert cifar10_lt.test_images.shape == (10000, 3, 32, 32)
    assert torch.bincount(cifar10_lt.test_labels).tolist() == [1000] * 10


def test_pixels_match_the_published_mean(cifar10_lt: ImageDataset) -> None:
    mean = cifar10_lt.test_images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.4942, 0.4851, 0.4504]), atol=0.01)  # CIFAR-10 test-split mean
