"""`dcl` and `dclw`: decoupled contrastive learning, NT-Xent without the positive in the denominator, and its
von Mises–Fisher-weighted form (Yeh, Hong, Hsu, Liu, Chen, LeCun, "Decoupled Contrastive Learning", ECCV 2022,
arXiv 2110.06848). views: lightly's `DCLLoss` / `DCLWLoss` (>= 1.5.21: one logsumexp over all 2B − 2 negatives).
image_text: this project's adaptation, CLIP's cross-modal negatives with the positive removed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Clock, StepOut
from .bimodal_losses import positive_mask, similarity
from .global_tau import GlobalTauStrategy
from .losses import non_negative_mask, positive_columns, similarity_matrix
from .registry import register_strategy
from .spec import check_range, frozen, log_uniform


@dataclass(frozen=True)
class DCLConfig:
    """`dcl` (views): the one τ (lightly's default 0.1)."""

    tau: float = 0.1

    def __post_init__(self) -> None:
        check_range("tau", self.tau, 0.0, None, low_open=True)


@dataclass(frozen=True)
class DCLWConfig:
    """`dclw` (views): τ and the weighting's σ (lightly's defaults 0.1 and 0.5)."""

    tau: float = 0.1
    sigma: float = 0.5  # scale of the positives' softmax in the weights, not a temperature of the loss

    def __post_init__(self) -> None:
        check_range("tau", self.tau, 0.0, None, low_open=True)
        check_range("sigma", self.sigma, 0.0, None, low_open=True)


@dataclass(frozen=True)
class DCLImageTextConfig(DCLConfig):
    """`dcl` (image_text): τ at CLIP's scale, as `fixed` (image_text); no reference exists here."""

    tau: float = 0.01


@dataclass(frozen=True)
class DCLWImageTextConfig(DCLWConfig):
    """`dclw` (image_text): τ at CLIP's scale and lightly's σ."""

    tau: float = 0.01


def vmf_weights(positive: Tensor, sigma: float) -> Tensor:
    """(B,) DCLW's negative von Mises–Fisher weights w_i = 2 − B·softmax_i(s⁺_i/σ) of (B,) positive similarities,
    detached (lightly copies the features first). They average 1 and go negative where B·softmax_i > 2; that
    reverses the positive's pull, as in the reference."""
    return 2.0 - positive.shape[0] * torch.softmax(positive.detach() / sigma, dim=0)


def decoupled_views(z1: Tensor, z2: Tensor, tau: float, weights: Tensor | None = None) -> Tensor:
    """lightly's `DCLLoss`: ½(_loss(z1, z2) + _loss(z2, z1)), i.e. the mean over the 2B anchors of
    −w s⁺_r/τ + log Σ_{k ∈ 2B − 2 negatives} exp(s_rk/τ). z1, z2: (B, d) normalised; weights: (B,) or None (w ≡ 1),
    the same for both anchors of a sample."""
    batch = z1.shape[0]
    logits = similarity_matrix(z1, z2) / tau
    positive = logits.gather(1, positive_columns(batch, z1.device)[:, None])[:, 0]
    if weights is not None:
        positive = positive * weights.repeat(2)
    negatives = torch.logsumexp(logits.masked_fill(non_negative_mask(batch, z1.device), float("-inf")), dim=1)
    return (negatives - positive).mean()


def decoupled_image_text(z_img: Tensor, z_txt: Tensor, tau: float, weights: Tensor | None = None) -> Tensor:
    """This project's adaptation: ½[mean_i (−w_i S_ii/τ + log Σ_{j≠i} e^{S_ij/τ}) + mean_i (−w_i S_ii/τ +
    log Σ_{j≠i} e^{S_ji/τ})], the B − 1 other captions (images) as negatives. z_img, z_txt: (B, d) normalised."""
    logits = similarity(z_img, z_txt) / tau
    positive = logits.diagonal() if weights is None else logits.diagonal() * weights
    own = positive_mask(logits.shape[0], logits.device)
    image_side = torch.logsumexp(logits.masked_fill(own, float("-inf")), dim=1)
    text_side = torch.logsumexp(logits.T.masked_fill(own, float("-inf")), dim=1)
    return 0.5 * ((image_side - positive).mean() + (text_side - positive).mean())


DECOUPLED_LOSSES = {"views": decoupled_views, "image_text": decoupled_image_text}


@register_strategy("dcl")
class DCL(GlobalTauStrategy):
    """DCL (Yeh et al., ECCV 2022): NT-Xent without the positive in the denominator, one constant τ (lightly's DCLLoss).

    L = (1/2B) Σ_r [−s⁺_r/τ + log Σ_{k ∈ neg(r)} exp(s_rk/τ)] over the 2B anchors. No parameters, no state;
    `temperatures()` reports τ. The loss is often negative."""

    Config = DCLConfig
    tau_hyperparameters = ("tau",)
    space = frozen(tau=log_uniform(0.05, 1.0))
    grid = frozen(tau=(0.07, 0.1, 0.2, 0.3, 0.5))

    def tau_at(self, clock: Clock) -> float:
        """τ, whatever the clock."""
        return self.config.tau

    def weights(self, z1: Tensor, z2: Tensor) -> Tensor | None:
        """(B,) weights of the positive terms; None: w ≡ 1."""
        return None

    def loss(self, z1: Tensor, z2: Tensor, tau: Tensor | float) -> Tensor:
        """The pairing's decoupled loss (`DECOUPLED_LOSSES`) with this strategy's positive weights."""
        return DECOUPLED_LOSSES[self.pairing](z1, z2, tau, self.weights(z1, z2))


@register_strategy("dcl", pairing="image_text")
class DCLImageText(DCL):
    """DCL (Yeh et al., ECCV 2022) on image–text pairs: CLIP's two sides, the positive out of each denominator.

    L = ½[mean_i (−S_ii/τ + log Σ_{j≠i} e^{S_ij/τ}) + mean_i (−S_ii/τ + log Σ_{j≠i} e^{S_ji/τ})], τ = 0.01."""

    Config = DCLImageTextConfig
    space = frozen(tau=log_uniform(0.005, 0.2))
    grid = frozen(tau=(0.005, 0.01, 0.02, 0.05, 0.1))


@register_strategy("dclw")
class DCLW(DCL):
    """DCLW (Yeh et al., ECCV 2022): DCL, the positive weighted by w_i = 2 − B·softmax_i(s⁺_i/σ) (lightly's DCLWLoss).

    The weights come from detached features, are the same for both anchors of a sample, scale only the positive term
    and average 1; the smallest is logged (`weight_min`: below 0 the positive pushes its pair apart)."""

    Config = DCLWConfig
    space = frozen(tau=log_uniform(0.05, 1.0), sigma=log_uniform(0.1, 2.0))
    grid = frozen(tau=(0.07, 0.1, 0.2, 0.3, 0.5), sigma=(0.25, 0.5, 1.0))

    def weights(self, z1: Tensor, z2: Tensor) -> Tensor:
        """(B,) w_i = 2 − B·softmax_i(s⁺_i/σ), detached."""
        return vmf_weights((z1 * z2).sum(dim=1), self.config.sigma)  # s⁺_i, or S_ii for image_text

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """The weighted loss, with the smallest weight logged."""
        out = super().compute(z1, z2, idx, clock)
        out.logs["weight_min"] = self.weights(z1, z2).min()
        return out


@register_strategy("dclw", pairing="image_text")
class DCLWImageText(DCLW):
    """DCLW (Yeh et al., ECCV 2022) on image–text pairs: `dcl` (image_text) with w_i = 2 − B·softmax_i(S_ii/σ).

    The same w_i weights the image anchor's and the text anchor's positive; τ = 0.01 (CLIP's scale), σ = 0.5."""

    Config = DCLWImageTextConfig
    space = frozen(tau=log_uniform(0.005, 0.2), sigma=log_uniform(0.1, 2.0))
    grid = frozen(tau=(0.005, 0.01, 0.02, 0.05, 0.1), sigma=(0.25, 0.5, 1.0))
