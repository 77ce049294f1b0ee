"""Image–text retrieval (README.md, "Evaluation protocols"; the iSogCLR code's `itm_eval`, CLIP_benchmark's
zero-shot retrieval).

On one split: N_img images, N_cap captions, caption_image (N_cap,) the image of each caption (local row index).
S = Z_I Z_Tᵀ on L2-normalised float32 features.
- image→text: rank_i = min over i's captions c of #{t : S_it > S_ic}; R@k = 100·mean_i[rank_i < k] (a hit is any
  of its captions in the top k);
- text→image: rank_c = #{j : S_jc > S_{i(c)c}} over all N_cap captions; R@k = 100·mean_c[rank_c < k];
- i2t_r_mean, t2i_r_mean: means over k ∈ {1, 5, 10}; r_mean: their mean (what the iSogCLR authors select on).

Ties: ">" is strict, so a tie with the positive never pushes it down (the references' argsort / topk break exact
ties arbitrarily; the results differ only there). Exactness: the features are snapped to the kNN module's grid
(`snap_features`), where float64 dot products are exact, and the search (`search_neighbors`: FAISS IndexFlatIP where
available, else torch) returns exact similarities of the top k. So every backend and device gives identical ranks,
equal to a dense float64 S on the snapped features; the snapping (≤ 2^-23 per coordinate) can differ from a plain
fp32 matmul only on near-ties. Ranks are computed up to the largest k asked (a rank ≥ k_max is reported as k_max).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .features import as_tensor, prepare_features
from .metrics import Metric, list_metrics
from .neighbors import search_neighbors

RETRIEVAL_KS = (1, 5, 10)  # the R@1/5/10 every image–text retrieval table reports (and r_mean averages)


def prepare_pairs(image_features: Any, text_features: Any, caption_image: Any,
                  device: torch.device | str | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(Z_I (N_img, d), Z_T (N_cap, d), caption_image (N_cap,) int64) on one device: float32, L2-normalised,
    snapped; ValueError unless every caption names an image in range and every image has a caption."""
    images = prepare_features(image_features, device)
    texts = prepare_features(text_features, images.device)
    owner = as_tensor(caption_image, images.device).reshape(-1)
    if owner.is_floating_point() or owner.numel() != texts.shape[0]:
        raise ValueError(f"caption_image must hold one integer image index per caption ({texts.shape[0]}), got "
                         f"{owner.dtype} with {owner.numel()} entries")
    owner = owner.to(torch.int64)
    if int(owner.min()) < 0 or int(owner.max()) >= images.shape[0]:
        raise ValueError(f"caption_image must lie in [0, {images.shape[0]}) (the image rows)")
    if images.shape[1] != texts.shape[1]:
        raise ValueError(f"image features have d={images.shape[1]} but text features d={texts.shape[1]}")
    if int(torch.bincount(owner, minlength=images.shape[0]).min()) == 0:
        raise ValueError("every image needs at least one caption (its image→text rank is undefined otherwise)")
    return images, texts, owner


def positive_scores(images: Tensor, texts: Tensor, caption_image: Tensor) -> Tensor:
    """(N_cap,) float64 S_{i(c), c}, exact on snapped rows (every product and partial sum is representable)."""
    return (images[caption_image].double() * texts.double()).sum(dim=1)


def i2t_ranks(images: Tensor, texts: Tensor, caption_image: Tensor, k_max: int, backend: str = "auto") -> Tensor:
    """(N_img,) int64 image→text ranks, min(rank_i, k_max): the captions strictly above the image's best caption."""
    best = torch.full((images.shape[0],), -torch.inf, dtype=torch.float64, device=images.device)
    best.scatter_reduce_(0, caption_image, positive_scores(images, texts, caption_image), reduce="amax")
    top = search_neighbors(texts, images, k_max, backend=backend)  # exact top k_max captions per image
    # whoever beats `best` is in the top k_max unless k_max others do, so the count is exact up to k_max
    return (top.sims > best[:, None]).sum(dim=1)


def t2i_ranks(images: Tensor, texts: Tensor, caption_image: Tensor, k_max: int, backend: str = "auto") -> Tensor:
    """(N_cap,) int64 text→image ranks, min(rank_c, k_max): the images strictly above the caption's own."""
    top = search_neighbors(images, texts, k_max, backend=backend)
    return (top.sims > positive_scores(images, texts, caption_image)[:, None]).sum(dim=1)


def recall_from_ranks(ranks: Tensor, ks: Sequence[int]) -> dict[int, float]:
    """{k: R@k in percent} from (M,) int64 ranks (0 = the positive is first): 100 · mean(rank < k).

    Ranks capped at k_max (`i2t_ranks`, `t2i_ranks`) give exact recalls for every k ≤ k_max.
    """
    return {k: 100.0 * (ranks < k).double().mean().item() for k in ks}


class ImageTextEvaluation:
    """One split's image and text features, evaluated by every `image_text` metric (ranks cached).

    image_features: (N_img, d); text_features: (N_cap, d) in the same joint space (the towers' outputs);
    caption_image: (N_cap,) int64, each caption's image as a row of image_features. Features are L2-normalised in
    float32 here. backend: the similarity search ("auto", "faiss", "torch"); device: where to compute.
    """

    def __init__(self, image_features: Any, text_features: Any, caption_image: Any, *, backend: str = "auto",
                 device: torch.device | str | None = None, ks: Sequence[int] = RETRIEVAL_KS) -> None:
        if not ks or min(ks) < 1:
            raise ValueError(f"recall@k needs k >= 1, got {list(ks)}")
        self.images, self.texts, self.caption_image = prepare_pairs(image_features, text_features, caption_image,
                                                                    device)
        self.backend, self.ks = backend, tuple(ks)
        self._ranks: dict[int, tuple[Tensor, Tensor]] = {}

    @property
    def num_images(self) -> int:
        """N_img, the split's images (rows of the image features)."""
        return int(self.images.shape[0])

    @property
    def num_captions(self) -> int:
        """N_cap, the split's captions (rows of the text features); several may share an image."""
        return int(self.texts.shape[0])

    def ranks(self, k_max: int | None = None) -> tuple[Tensor, Tensor]:
        """((N_img,) image→text, (N_cap,) text→image) ranks capped at k_max (default: the largest k)."""
        k_max = k_max or max(self.ks)
        if k_max not in self._ranks:
            args = (self.images, self.texts, self.caption_image, k_max, self.backend)
            self._ranks[k_max] = (i2t_ranks(*args), t2i_ranks(*args))
        return self._ranks[k_max]

    def _rank_pair(self, k: int) -> tuple[Tensor, Tensor]:
        # one search at the largest k serves every smaller k (capped ranks are exact below the cap)
        return self.ranks(max(k, max(self.ks)))

    def i2t_recall(self, k: int) -> float:
        """Image→text R@k (%)."""
        return recall_from_ranks(self._rank_pair(k)[0], (k,))[k]

    def t2i_recall(self, k: int) -> float:
        """Text→image R@k (%) over all captions."""
        return recall_from_ranks(self._rank_pair(k)[1], (k,))[k]

    def i2t_r_mean(self) -> float:
        """Mean of image→text R@k (%) over the evaluation's ks (default 1, 5, 10): `txt_r_mean` of the iSogCLR
        code's `itm_eval` (text retrieval)."""
        return sum(self.i2t_recall(k) for k in self.ks) / len(self.ks)

    def t2i_r_mean(self) -> float:
        """Mean of text→image R@k (%) over the evaluation's ks (default 1, 5, 10): `img_r_mean` of the iSogCLR
        code's `itm_eval` (image retrieval)."""
        return sum(self.t2i_recall(k) for k in self.ks) / len(self.ks)

    def r_mean(self) -> float:
        """(i2t_r_mean + t2i_r_mean) / 2, the iSogCLR authors' `r_mean`."""
        return (self.i2t_r_mean() + self.t2i_r_mean()) / 2.0


def evaluate_image_text(ev: ImageTextEvaluation, metrics: list[Metric] | None = None, *,
                        split: str = "test") -> dict[str, float]:
    """{metric name: value} of every registered `image_text` metric of `split` (or the given ones) that computes
    from an evaluation; val metrics are named as registered (`val_...`): build `ev` on the val split for them."""
    chosen = metrics if metrics is not None else list_metrics(pairing="image_text", split=split)
    return {m.name: float(m.compute(ev)) for m in chosen if m.compute is not None}
