"""Zero-shot classification with prompt templates (CLIP's protocol as in CLIP_benchmark `zeroshot_classification`):

    w_c = normalize(mean_t normalize(embed(template_t(class_c)))),   logits = z_I · W   (z_I L2-normalised)

Scores are in percent (the registry's unit; the iSogCLR code reports fractions). A sample's rank is the number of
classes scored strictly above its true class, so a tie never costs a hit (as in image–text retrieval); top-k is
rank < k and the mean per-class recall (balanced accuracy, CLIP_benchmark's third number) averages rank < 1 over
the classes present. Top-5 is NaN with fewer than 5 classes, as CLIP_benchmark leaves it out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tempbench.eval.features import as_tensor, normalize_features

# The 18 CIFAR-10/100 prompt templates of OpenAI's CLIP (data/prompts.md), as CLIP_benchmark ships them for
# cifar10 and cifar100 (via SLIP's templates.json); "{}" is the class name.
CIFAR_TEMPLATES = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a black and white photo of a {}.",
    "a low contrast photo of a {}.",
    "a high contrast photo of a {}.",
    "a bad photo of a {}.",
    "a good photo of a {}.",
    "a photo of a small {}.",
    "a photo of a big {}.",
    "a photo of the {}.",
    "a blurry photo of the {}.",
    "a black and white photo of the {}.",
    "a low contrast photo of the {}.",
    "a high contrast photo of the {}.",
    "a bad photo of the {}.",
    "a good photo of the {}.",
    "a photo of the small {}.",
    "a photo of the big {}.",
)
EmbedFn = Callable[[list[str]], Tensor]  # texts -> (T, d) joint-space embeddings, e.g. text_towers.embed_texts


def zero_shot_weights(class_names: Sequence[str], templates: Sequence[str], embed_fn: EmbedFn) -> Tensor:
    """(C, d) float32 class vectors: each prompt embedding L2-normalised, averaged over templates, normalised.
    All C·T prompts go to embed_fn in one call (it batches as it likes)."""
    if not class_names or not templates:
        raise ValueError("zero-shot classification needs at least one class name and one template")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise ValueError(f"each template needs exactly one '{{}}' for the class name, got {bad[:3]}")
    prompts = [t.format(c) for c in class_names for t in templates]
    emb = as_tensor(embed_fn(prompts)).float()
    if emb.ndim != 2 or emb.shape[0] != len(prompts):
        raise ValueError(f"embed_fn returned {tuple(emb.shape)} for {len(prompts)} prompts")
    per_class = F.normalize(emb, dim=1).view(len(class_names), len(templates), -1).mean(dim=1)
    return F.normalize(per_class, dim=1)


def true_class_ranks(logits: Tensor, labels: Tensor) -> Tensor:
    """(N,) int64: classes scored strictly above each sample's true class."""
    return (logits > logits.gather(1, labels[:, None])).sum(dim=1)


def zero_shot_classify(image_features: Any, class_names: Sequence[str], templates: Sequence[str],
                       embed_fn: EmbedFn, labels: Any) -> dict[str, float]:
    """{"zs_top1", "zs_top5", "zs_class_avg"} (%) of (N, d) joint-space image features (the image tower's
    projector output) against the class vectors of `class_names` under `templates`; labels: (N,) int64 in [0, C)."""
    z = normalize_features(image_features)
    weights = zero_shot_weights(class_names, templates, embed_fn).to(z.device)
    if weights.shape[1] != z.shape[1]:
        raise ValueError(f"text embeddings have d={weights.shape[1]} but image features d={z.shape[1]}")
    y = as_tensor(labels, z.device).reshape(-1).to(torch.int64)
    if y.numel() != z.shape[0] or int(y.min()) < 0 or int(y.max()) >= len(class_names):
        raise ValueError(f"labels must be {z.shape[0]} class indices in [0, {len(class_names)})")
    ranks = true_class_ranks(z @ weights.T, y)
    present = torch.unique(y)
    per_class = torch.stack([(ranks[y == c] < 1).double().mean() for c in present])
    return {"zs_top1": 100.0 * (ranks < 1).double().mean().item(),
            "zs_top5": 100.0 * (ranks < 5).double().mean().item() if len(class_names) >= 5 else float("nan"),
            "zs_class_avg": 100.0 * per_class.mean().item()}
