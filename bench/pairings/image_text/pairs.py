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

from tempbench.datasets import CaptionDataset
from tempbench.encoders import ContrastiveModel


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

    def draw(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """(n,) one random pair of each of the resident images `images` (n,) (CPU), uniformly among its captions."""
        start, count = self.offsets[images], self.offsets[images + 1] - self.offsets[images]
        return start + (torch.rand(len(images), generator=generator, dtype=torch.float64) * count).long()


class ImageTextModel(nn.Module):
    """The two towers. forward(images (B, C, S, S), caption indices (B,)) -> (image projections, text projections),
    both (B, out); `features` is the image tower's backbone (what the thread calibration and kNN-style code call)."""

    def __init__(self, image: ContrastiveModel, text: nn.Module) -> None:
        super().__init__()
        self.image, self.text = image, text
        self.feature_dim = image.feature_dim

    def features(self, x: Tensor) -> Tensor:
        """(B, F) backbone features of the image tower (what the thread calibration and feature code call)."""
        return self.image.features(x)

    def forward(self, images: Tensor, captions: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """(image projections, text projections), each (B, out); the image tower's alone without captions."""
        if captions is None:  # an image-only call (thread calibration)
            return self.image(images)
        return self.image(images), self.text(captions)
