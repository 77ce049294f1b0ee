"""`RawSplits`: what every source returns, and the tensor helpers that bring it to a card's size and channels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class RawSplits:
    """A source's train and test splits: uint8 (N, C, H, W) images, int64 (N,) labels, class names in label order.

    origin says where the images were read from (a path, a hub name), for messages and result rows; augment_hint is
    the recipe a source suggests when no card names one.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    origin: str
    augment_hint: str = "simclr"

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.ndim != 4:
                raise ValueError(f"{self.origin}: {split} images must be uint8 (N, C, H, W), got {images.dtype} "
                                 f"{tuple(images.shape)}")
            if labels.shape != (images.shape[0],):
                raise ValueError(f"{self.origin}: {len(labels)} {split} labels for {images.shape[0]} images")
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(self.classes)):
                raise ValueError(f"{self.origin}: {split} labels outside [0, {len(self.classes)})")


def images_from_numpy(array: np.ndarray) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) array -> contiguous uint8 (N, C, H, W) tensor."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {array.dtype}")
    if array.ndim == 3:
        array = array[:, :, :, None]
    out = np.ascontiguousarray(array.transpose(0, 3, 1, 2))
    # torch needs writable memory; np.frombuffer (IDX files) gives read-only arrays
    return torch.from_numpy(out if out.flags.writeable else out.copy())


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, channels, H, W): gray is repeated to RGB; RGB goes to gray by ITU-R 601 luma."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels")


def to_size(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size): antialiased bilinear resize of the shorter side, then centre crop."""
    h, w = images.shape[-2:]
    if h == w == size:
        return images
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    out = []
    for start in range(0, len(images), chunk):  # bounded float memory for large splits
        x = F.interpolate(images[start:start + chunk].float(), size=(new_h, new_w), mode="bilinear",
                          antialias=new_h < h, align_corners=False)  # only shrinking can alias
        out.append(x[..., top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out).contiguous() if out else images.new_zeros((0, images.shape[1], size, size))
