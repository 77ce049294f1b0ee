"""The training pairs of an image–caption dataset and the two-tower model that encodes them.

Three choices, the same as FastCLIP's:
- an epoch visits every training image once (a seeded permutation, drop_last), each paired with one of its captions
  drawn at random (seeded by run seed and epoch);
- strategy state is indexed per (image, caption) pair: `idx` is the pair's index among the training captions, so an
  image's five captions keep five u's and τ's (their positives differ);
- a batch never holds two captions of the same image, because it holds each image at most once, so no caption of the
  same image is ever counted as a negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tempbench.augment import normalize
from tempbench.datasets import CaptionDataset
from tempbench.encoders import ContrastiveModel

from .locked import LockedImageTower


@dataclass(frozen=True)
class TrainingPairs:
    """The training (image, caption) pairs: pair j is caption `captions[j]` of resident image `images[j]`;
    `offsets[i]:offsets[i + 1]` are the pairs of resident image i (captions are stored image by image)."""

    captions: Tensor  # (M,) int64 caption indices into the dataset
    images: Tensor  # (M,) int64 rows of the resident training images
    offsets: Tensor  # (N_img + 1,) int64

    @classmethod
    def of(cls, data: CaptionDataset) -> TrainingPairs:
        """The pairs of `data`'s training split; a training image without any caption is an error."""
        _, captions, local = data.split_pairs("train")
        counts = torch.bincount(local, minlength=len(data.splits["train"]))
        if (counts == 0).any():
            raise ValueError(f"{data.name}: {int((counts == 0).sum())} training images have no caption")
        return cls(captions, local, torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]))

    def rounds(self, generator: torch.Generator) -> list[Tensor]:
        """Every pair once, as rounds that each hold at most one pair per image: each image's pairs are dealt to
        rounds 0, 1, ... in a random order, so round r holds the r-th drawn caption of every image that has more than
        r captions. Returns the rounds' pair indices (CPU int64), each in image order (shuffle them per round).
        Batches cut from one round never hold two captions of one image (those would be false negatives)."""
        counts = self.offsets[1:] - self.offsets[:-1]
        # a random rank per pair within its image: a uniform random order of each image's captions
        keys = torch.rand(len(self.captions), generator=generator, dtype=torch.float64) + self.images.double()
        order = torch.argsort(keys)  # pairs grouped by image (images ascending), randomly ordered within
        rank = torch.arange(len(order)) - torch.repeat_interleave(self.offsets[:-1], counts)
        by_round = torch.empty_like(rank)
        by_round[order] = rank
        return [torch.nonzero(by_round == r).flatten() for r in range(int(counts.max()))]

    def draw(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """(n,) one random pair of each of the resident images `images` (n,) (CPU), uniformly among its captions."""
        start, count = self.offsets[images], self.offsets[images + 1] - self.offsets[images]
        return start + (torch.rand(len(images), generator=generator, dtype=torch.float64) * count).long()


class ImageTextModel(nn.Module):
    """The two towers. forward(image inputs, caption indices (B,)) -> (image projections, text projections), both
    (B, out). The image inputs are normalised pixels (B, C, S, S) for a trained image tower, or image rows (B,) int64
    for a locked one (`locked.LockedImageTower`, cached features): `image_inputs` makes them either way."""

    def __init__(self, image: ContrastiveModel | nn.Module, text: nn.Module) -> None:
        super().__init__()
        self.image, self.text = image, text
        self.feature_dim = image.feature_dim
        self.locked = isinstance(image, LockedImageTower)

    def image_inputs(self, data: CaptionDataset, rows: Tensor, device: torch.device) -> Tensor:
        """What the image tower takes for the dataset's images `rows` (n,), un-augmented: the rows themselves for a
        locked tower, else the normalised pixels (n, C, S, S) on `device`."""
        if self.locked:
            return rows.to(device)
        return normalize(data.images[rows].to(device), data.mean, data.std)

    def features(self, x: Tensor) -> Tensor:
        """(B, F) backbone features of the image tower (what the thread calibration and feature code call)."""
        return self.image.features(x)

    def forward(self, images: Tensor, captions: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """(image projections, text projections), each (B, out); the image tower's alone without captions."""
        if captions is None:  # an image-only call (thread calibration)
            return self.image(images)
        return self.image(images), self.text(captions)
