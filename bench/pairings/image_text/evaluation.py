"""Evaluation of an image–text run: image→text and text→image retrieval on the test split (once) and on the val split
(what selection and the monitor may read), from un-augmented images and the text tower in eval mode."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tempbench.datasets import CaptionDataset
from tempbench.eval.retrieval_text import ImageTextEvaluation, evaluate_image_text

from .pairs import ImageTextModel


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
        image = torch.cat([model.image(model.image_inputs(data, images[i:i + 512], device))
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
