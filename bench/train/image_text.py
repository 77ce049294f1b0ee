"""Image–text (CLIP-style) training: an image tower (any encoder of `tempbench.encoders`) and a text tower
(`tempbench.text_towers`), paired by caption.

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
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tempbench.augment import normalize
from tempbench.datasets import CaptionDataset, write_atomic
from tempbench.encoders import ContrastiveModel
from tempbench.eval.density import density_row_fields, save_density_figure, tau_density_analysis
from tempbench.eval.retrieval_text import ImageTextEvaluation, evaluate_image_text
from tempbench.text_towers import FROZEN_ENCODERS, caption_embeddings, create_text_tower

from .artifacts import write_or_warn

CAPTION = 3  # `seed_for` stream of the caption drawn for each image


@dataclass(frozen=True)
class TrainingPairs:
    """The training (image, caption) pairs: pair j is caption `captions[j]` of resident image `images[j]`;
    `offsets[i]:offsets[i + 1]` are the pairs of resident image i (captions are stored image by image)."""

    captions: Tensor  # (M,) int64 caption indices into the dataset
    images: Tensor  # (M,) int64 rows of the resident training images
    offsets: Tensor  # (N_img + 1,) int64

    @classmethod
    def of(cls, data: CaptionDataset) -> TrainingPairs:
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
        return self.image.features(x)

    def forward(self, images: Tensor, captions: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        if captions is None:  # an image-only call (thread calibration)
            return self.image(images)
        return self.image(images), self.text(captions)


def build_text_tower(name: str, data: CaptionDataset, out_dim: int, hidden: int, device: torch.device) -> nn.Module:
    """The text tower over every caption of the dataset (forward takes caption indices), on `device`."""
    return create_text_tower(name, data.captions, out_dim, hidden=hidden, device=str(device)).to(device)


# ---- evaluation -----------------------------------------------------------------------------------------------------
@torch.no_grad()
def split_projections(model: ImageTextModel, data: CaptionDataset, split: str, device: torch.device,
                      out_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """(image projections (n, d), caption projections (M, d), each caption's image row (M,)) of `split`, from
    un-augmented images and the text tower, in eval mode, float32; the first `out_dim` columns only (a strategy's
    extra outputs, e.g. TaU's temperature, are not part of the embedding)."""
    images, captions, local = data.split_pairs(split)
    was_training = model.training
    model.eval()
    try:
        image = torch.cat([model.image(normalize(data.images[images[i:i + 512]].to(device), data.mean, data.std))
                           for i in range(0, len(images), 512)])
        text = torch.cat([model.text(captions[i:i + 2048].to(device)) for i in range(0, len(captions), 2048)])
    finally:
        model.train(was_training)
    return image[:, :out_dim].float(), text[:, :out_dim].float(), local


def retrieval(model: ImageTextModel, data: CaptionDataset, config: Any, device: torch.device) -> dict[str, float]:
    """Image→text and text→image recall@1/5/10 and their means on the test split, and as `val_...` on the val
    split (what selection may read)."""
    metrics: dict[str, float] = {}
    for split in ("test", "val"):
        if len(data.splits[split]) == 0:
            continue
        image, text, local = split_projections(model, data, split, device, config.projector_out)
        ev = ImageTextEvaluation(image, text, local, backend=config.eval_backend)
        metrics |= evaluate_image_text(ev, split=split)
    return metrics


def val_r_mean(model: ImageTextModel, data: CaptionDataset, config: Any, device: torch.device) -> float:
    """r_mean on the val split: the per-epoch monitor (NaN without a val split)."""
    if len(data.splits["val"]) == 0:
        return float("nan")
    image, text, local = split_projections(model, data, "val", device, config.projector_out)
    return ImageTextEvaluation(image, text, local, backend=config.eval_backend).r_mean()


@dataclass
class DensityReport:
    """Per-pair τ_I, τ_T of a per-sample-τ strategy against each caption's density among the training captions."""

    summary: dict[str, Any]
    temperatures: Tensor  # (M, 2) CPU
    captions: Tensor  # (M,)

    @classmethod
    def of(cls, temperatures: Tensor, pairs: TrainingPairs, data: CaptionDataset, text_tower: str) -> DensityReport:
        emb = caption_embeddings(data.captions, text_tower if text_tower in FROZEN_ENCODERS else "minilm")
        summary = tau_density_analysis(temperatures, emb[pairs.captions], data.caption_image[pairs.captions])
        return cls(summary, temperatures, pairs.captions)

    def row_fields(self) -> dict[str, float]:
        return density_row_fields(self.summary)

    def write(self, folder: Path, title: str = "") -> list[Path]:
        """tau_per_pair.csv, tau_by_density.csv and tau_vs_density.png; a file that fails is a warning."""
        import pandas as pd  # optional here: the training path runs where only torch and numpy are installed

        per_pair = pd.DataFrame({"caption": self.captions.numpy(), "tau_image": self.temperatures[:, 0].numpy(),
                                 "tau_text": self.temperatures[:, 1].numpy()})
        written = [write_or_warn(folder / "tau_per_pair.csv",
                                 lambda p: write_atomic(p, lambda fh: per_pair.to_csv(fh, index=False))),
                   write_or_warn(folder / "tau_by_density.csv",
                                 lambda p: write_atomic(p, lambda fh: self.summary["table"].to_csv(fh, index=False))),
                   save_density_figure(self.summary, folder / "tau_vs_density.png", title=title)]
        return [p for p in written if p is not None]
