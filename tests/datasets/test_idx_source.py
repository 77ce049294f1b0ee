"""The idx source: generated MNIST-format files (plain and gzipped), bad files, and the real Fashion-MNIST."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tempbench.datasets import load_dataset

FASHION = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray) -> bytes:
    """MNIST IDX: two zero bytes, type 0x08 (unsigned byte), ndim, big-endian int32 dims, then the data."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()


def write_idx(folder: Path, compress: bool, n_train: int = 12, n_test: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 6, 6), dtype=np.uint8),
              "train-labels-idx1-ubyte": (np.arange(n_train) % 3).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 5, 6), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) % 3).astype(np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        if compress:
            with gzip.open(folder / f"{name}.gz", "wb") as fh:
                fh.write(idx_bytes(array))
        else:
            (folder / name).write_bytes(idx_bytes(array))
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    arrays = write_idx(tmp_path, compress)
    ds = load_dataset(f"idx:{tmp_path}")
    # the test images are 5x6 here: brought to the training side (6) by a shorter-side resize and centre crop
    assert ds.train_images.shape == (12, 1, 6, 6) and ds.test_images.shape == (4, 1, 6, 6)
    assert torch.equal(ds.train_images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert ds.train_labels.tolist() == (np.arange(12) % 3).tolist() and ds.classes == ["0", "1", "2"]
    assert ds.image_size == 6 and ds.train_images.is_contiguous()


def test_idx_resize_and_long_tail(tmp_path: Path) -> None:
    write_idx(tmp_path, compress=True, n_train=30)
    ds = load_dataset(f"idx:{tmp_path}", long_tail=0.1, image_size=4)
    assert ds.train_images.shape[1:] == (1, 4, 4) and ds.class_counts == [10, 3, 1]


def test_bad_idx_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"IDX folder .* does not exist"):
        load_dataset(f"idx:{tmp_path / 'nowhere'}")
    write_idx(tmp_path, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="no t10k-labels"):
        load_dataset(f"idx:{tmp_path}")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x04abcd")  # float type
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        load_dataset(f"idx:{tmp_path}")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")  # truncated
    with pytest.raises(ValueError, match=r"declares shape \(9,\) but holds 3 values"):
        load_dataset(f"idx:{tmp_path}")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_lt() -> None:
    ds = load_dataset("fashion-mnist-lt")
    assert ds.class_counts == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert ds.train_images.shape == (14886, 1, 28, 28) and ds.test_images.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.classes[0] == "T-shirt/top" and ds.classes[-1] == "Ankle boot"
    assert ds.mean == (0.2860,) and ds.augment == "simclr"
