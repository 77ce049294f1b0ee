"""`tau_free`: temperature-free InfoNCE, the cosine mapped through scale·arctanh instead of divided by τ (Kim & Kim,
"Temperature-Free Loss Function for Contrastive Learning", arXiv 2501.17683, 2025). No official code exists; the
mapping ℓ = 2 atanh(s) = log((1 + s)/(1 − s)) follows the abstract and third-party implementations, with the factor
(`scale`, 2 by default) a hyperparameter. views: NT-Xent with the mapping; image_text: CLIP's cross-entropy with it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Clock, StepOut, Strategy, set_rows
from .bimodal_losses import similarity
from .losses import positive_columns, similarity_matrix
from .registry import register_strategy
from .spec import check_range, frozen, log_uniform

# s is clamped to [−1 + ε, 1 − ε] before atanh: atanh(±1) = ±∞ (the self-similarity, duplicates), and bf16/fp32 round
# 0.9999999 to 1. At ε ≈ 1e-6, |atanh| <= 7.25 (|ℓ| <= 14.5 at scale 2); the clamp zeroes the gradient beyond it.
# ε = 17·2⁻²⁴ ≈ 1.013e-6: float32 rounds 1 − 1e-6 to 1 − ε, so float32 runs clamp where they always did, and 1 − ε
# being exact in float32, `tau_bounds()` (float64) is the τ_eff float32 state holds at the clamp (at 1e-6: 9e-4 off).
CLAMP_EPS = 17 * 2.0**-24


def _ratio_at_clamp() -> float:
    """s/atanh(s) at the clamp s = 1 − ε: the smallest τ_eff is this over `scale`."""
    return (1.0 - CLAMP_EPS) / math.atanh(1.0 - CLAMP_EPS)


@dataclass(frozen=True)
class TauFreeConfig:
    """`tau_free`: the factor of atanh (2: the log-odds of (1 + s)/2; 1: the other reading)."""

    scale: float = 2.0

    def __post_init__(self) -> None:
        check_range("scale", self.scale, 0.0, None, low_open=True)


def atanh_logits(sim: Tensor, scale: float) -> Tensor:
    """scale·atanh(s) of similarities (any shape), s clamped to [−1 + ε, 1 − ε] first (`CLAMP_EPS`)."""
    return scale * torch.atanh(sim.clamp(-1.0 + CLAMP_EPS, 1.0 - CLAMP_EPS))


def tau_free_views(z1: Tensor, z2: Tensor, scale: float) -> Tensor:
    """NT-Xent with s_rc/τ replaced by scale·atanh(s_rc): mean over the 2B anchors of −log softmax of the positive
    among the 2B − 1 others (the positive in the denominator). z1, z2: (B, d) normalised."""
    batch = z1.shape[0]
    self_col = torch.eye(2 * batch, dtype=torch.bool, device=z1.device)
    logits = atanh_logits(similarity_matrix(z1, z2), scale).masked_fill(self_col, float("-inf"))
    return F.cross_entropy(logits, positive_columns(batch, z1.device))


def tau_free_image_text(z_img: Tensor, z_txt: Tensor, scale: float) -> Tensor:
    """CLIP's symmetric cross-entropy with S_ij/τ replaced by scale·atanh(S_ij). z_img, z_txt: (B, d) normalised."""
    logits = atanh_logits(similarity(z_img, z_txt), scale)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


TAU_FREE_LOSSES = {"views": tau_free_views, "image_text": tau_free_image_text}


def effective_tau(positive: Tensor, scale: float) -> Tensor:
    """τ_eff = s⁺/(scale·atanh s⁺) of (B,) positive similarities, detached: the constant τ that would give the positive
    the same logit. 1/scale at s⁺ = 0 (the limit), falling to `_ratio_at_clamp()`/scale at the clamp; even in s⁺."""
    s = positive.detach().clamp(-1.0 + CLAMP_EPS, 1.0 - CLAMP_EPS)
    ratio = torch.where(s == 0, torch.ones_like(s), s / torch.atanh(s))  # 0/0 at s = 0 only; accurate elsewhere
    return ratio / scale


@register_strategy("tau_free")
class TauFree(Strategy):
    """Temperature-free InfoNCE (Kim & Kim, arXiv 2501.17683, 2025): NT-Xent with s/τ replaced by scale·atanh(s).

    There is no temperature to set; `temperatures()` reports the equivalent one, τ_eff = s⁺/(scale·atanh s⁺) of each
    sample's positive when last seen (1/scale before), in (0, 1/scale]: a per-sample record of the alignment, written
    in `update()`. `tau_bounds()` and `pinned_tau_hyperparameters` work through that τ_eff (no τ field exists)."""

    Config = TauFreeConfig
    per_sample_state = True  # only the report of τ_eff (`last_tau`); the loss itself has no state
    per_sample_tau = True
    tau_buffer = "last_tau"
    space = frozen(scale=log_uniform(0.5, 8.0))
    grid = frozen(scale=(0.5, 1.0, 2.0, 4.0))

    def __init__(self, num_samples: int, config: TauFreeConfig) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("last_tau", torch.full(self.tau_shape(num_samples), 1.0 / config.scale))

    @classmethod
    def pinned_tau_hyperparameters(cls, tau: float) -> dict[str, Any]:
        """The scale whose smallest τ_eff (a positive at the clamp, logits up to 1/`tau` in size) is `tau`."""
        return {"scale": _ratio_at_clamp() / tau}

    def tau_bounds(self) -> tuple[float, float]:
        """(τ_eff at s⁺ = 1 − ε, τ_eff at s⁺ = 0) = (0.138/scale, 1/scale)."""
        return (_ratio_at_clamp() / self.config.scale, 1.0 / self.config.scale)

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """The pairing's loss (`TAU_FREE_LOSSES`); τ_eff of each sample's positive is reported and saved."""
        loss = TAU_FREE_LOSSES[self.pairing](z1, z2, self.config.scale)
        tau = effective_tau((z1 * z2).sum(dim=1), self.config.scale)
        if self.pairing == "image_text":
            tau = tau[:, None].expand(-1, 2)  # S_ii is both anchors' positive
        return StepOut(loss=loss, tau=tau, logs={"tau_mean": tau.mean(), "tau_min": tau.min()}, saved={"tau": tau})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """Record each batch sample's τ_eff."""
        set_rows(self.last_tau, idx, out.saved["tau"].to(self.last_tau.dtype))


@register_strategy("tau_free", pairing="image_text")
class TauFreeImageText(TauFree):
    """Temperature-free InfoNCE (Kim & Kim, 2025) on image–text pairs: CLIP's cross-entropy, S_ij/τ → scale·atanh S_ij.

    `StepOut.tau` and `temperatures()` are (·, 2) with τ_eff(S_ii) in both columns (the image and the text anchor
    share the positive)."""
