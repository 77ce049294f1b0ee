"""The training pairs of an image–caption dataset and the two-tower model that encodes them.

Three choices, the same as FastCLIP's:
- an epoch visits every training image once (a seeded permutation, drop_last), each paired with one of its captions
  drawn at random (seeded by run seed and epoch), or (`epoch_by="pairs"`) every pair once (`TrainingPairs.epoch`);
- strategy state is indexed per (image, caption) pair: `idx` is the pair's index among the training captions, so an
  image's five captions keep five u's and τ's (their positives differ). `state_index="image_caption"` indexes the
  image side by the image instead (the iSogCLR authors'; the pairing's `state_index`);
- a batch never holds two captions of the same image, because it holds each image at most once, so no caption of the
  same image is ever counted as a negative.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

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

    def epoch(self, batch_size: int, order_gen: torch.Generator, caption_gen: torch.Generator) -> Tensor:
        """Every pair once, in whole batches that never hold two captions of one image: the `rounds`, each shuffled,
        in a seeded order, concatenated and cut into batches of `batch_size` (`without_repeats`); only the last
        len % batch_size pairs of the epoch fall off (drop_last), not a remainder per round. Returns the
        (steps × batch_size,) pair indices in training order."""
        rounds = self.rounds(caption_gen)
        order = torch.cat([rounds[r][torch.randperm(len(rounds[r]), generator=order_gen)]
                           for r in torch.randperm(len(rounds), generator=order_gen).tolist()])
        return without_repeats(order, self.images, batch_size)

    def draw(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """(n,) one random pair of each of the resident images `images` (n,) (CPU), uniformly among its captions."""
        start, count = self.offsets[images], self.offsets[images + 1] - self.offsets[images]
        return start + (torch.rand(len(images), generator=generator, dtype=torch.float64) * count).long()


def without_repeats(order: Tensor, groups: Tensor, batch_size: int) -> Tensor:
    """`order` (n,) cut to its whole batches of `batch_size`, with entries swapped until no batch holds two entries
    of one group (`groups[order]`, e.g. the image of each pair). Batches are repaired first to last: a repeat is
    swapped with the first entry after the batch whose group the batch lacks and whose own batch lacks the repeat's
    group (the dropped tail has no batch), else with such an entry before it. Where the order is a concatenation of
    repeat-free runs (the `rounds`) only the batches across a run boundary need a swap, a few per epoch.
    Raises ValueError when no swap exists (a group with more than n / batch_size entries)."""
    order = order.clone()
    steps = len(order) // batch_size
    group = groups[order].tolist()
    members = [set(group[k * batch_size:(k + 1) * batch_size]) for k in range(steps)]
    batch_of = [min(i // batch_size, steps) for i in range(len(order))]  # `steps`: the dropped tail
    for k in range(steps):
        lo, hi = k * batch_size, (k + 1) * batch_size
        if len(members[k]) == batch_size:
            continue
        seen: set[int] = set()
        for p in range(lo, hi):
            if group[p] not in seen:
                seen.add(group[p])
                continue
            q = next((q for q in chain(range(hi, len(order)), range(lo)) if group[q] not in members[k]
                      and (batch_of[q] == steps or group[p] not in members[batch_of[q]])), None)
            if q is None:
                raise ValueError(f"cannot cut {len(order)} entries into batches of {batch_size} without two of one "
                                 f"group in a batch (group {group[p]} has too many)")
            other = batch_of[q]
            if other < steps:
                members[other].discard(group[q])
                members[other].add(group[p])
            members[k].add(group[q])
            seen.add(group[q])
            order[p], order[q] = int(order[q]), int(order[p])
            group[p], group[q] = group[q], group[p]
    return order[:steps * batch_size]


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
