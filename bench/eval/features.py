"""Feature preparation shared by every protocol: float32 tensors on one device, L2-normalised rows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tempbench.augment import normalize


def as_tensor(x: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """A tensor view of `x` (tensor, NumPy array or sequence) on `device` (default: where `x` already is)."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device=device if device is not None else t.device, dtype=dtype or t.dtype)


def normalize_features(x: Any, device: torch.device | str | None = None) -> Tensor:
    """(N, d) features -> (N, d) float32 rows of unit L2 norm (all-zero rows stay zero).

    Float32 even under autocast: bf16 similarities are too coarse for exp(sim / 0.07) votes.
    """
    t = as_tensor(x, device)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"features must be a non-empty (N, d) array, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"features must be floating point, got {t.dtype}")
    with torch.autocast(device_type=t.device.type, enabled=False):
        t = F.normalize(t.to(torch.float32), dim=1)
    if not torch.isfinite(t).all():
        raise ValueError("features contain NaN or inf")
    return t


def as_labels(y: Any, n: int, num_classes: int, device: torch.device | str | None, name: str) -> Tensor:
    """(n,) int64 labels in [0, num_classes) on `device`, or ValueError saying what is wrong."""
    t = as_tensor(y, device).reshape(-1)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be integer class indices, got {t.dtype}")
    if t.numel() != n:
        raise ValueError(f"{name} has {t.numel()} entries but the features have {n} rows")
    t = t.to(torch.int64)
    if n and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got range [{int(t.min())}, {int(t.max())}]")
    return t


def snap_features(x: Tensor) -> Tensor:
    """(N, d) rows with |x| ≤ 1 -> rounded to a grid of 2^-b, b = min(22, (53 - ⌈log2 d⌉) // 2).

    Why: float64 dot products of snapped rows are exact in any summation order, so similarity ties are exact ties on
    every device and backend (see `neighbors`). The rounding (≤ 2^-23 per coordinate) is far below feature noise.
    """
    # a float64 dot product of d snapped rows sums d integers of ≤ 2b bits: exact while d · 2^(2b) ≤ 2^53; 22 bits
    # also keeps every grid value exact in float32 (24-bit significand), so snapped float32 rows lose nothing
    bits = min(22, (53 - math.ceil(math.log2(max(2, x.shape[1])))) // 2)
    scale = float(2**bits)
    return torch.round(x * scale) / scale


def prepare_features(x: Any, device: torch.device | str | None = None) -> Tensor:
    """(N, d) features -> float32, L2-normalised, snapped (`snap_features`); what every protocol works on."""
    return snap_features(normalize_features(x, device))


@torch.no_grad()
def extract_features(model: Any, images: Tensor, mean: Any, std: Any, device: torch.device,
                     batch: int = 1024) -> Tensor:
    """(N, feature_dim) float32 backbone features (`model.features`) of un-augmented uint8 images (N, C, H, W),
    normalised by mean/std, in eval mode, on `device`.

    Float32 on every device, never under autocast: bf16 features would break the exact-tie guarantees of the kNN
    (`neighbors`) and move accuracies by rounding alone.
    """
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for start in range(0, len(images), batch):
            x = normalize(images[start:start + batch].to(device), mean, std)
            if device.type == "cuda":  # NHWC: cuDNN's fast layout, and the one training uses under bf16
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, enabled=False):
                chunks.append(model.features(x).float())
    finally:
        model.train(was_training)
    # an empty split still has the model's width, so (0, d) checks downstream fail with a clear message
    return torch.cat(chunks) if chunks else torch.zeros((0, model.feature_dim), device=device)
