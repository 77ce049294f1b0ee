"""Pure loss functions of the image–text strategies (no state; tensors in, tensors out).

Layout (README.md, "Image–text notation"): z_img, z_txt are (B, d) normalised; S = z_img z_txtᵀ is (B, B), S[i, j]
the image of pair i against the text of pair j. Image anchor i reads row i of S, text anchor i reads column i; each
has its own pair as the positive (the diagonal) and the other B − 1 pairs as negatives. Per-anchor quantities of
both sides are stacked side-first as (2, B) inside this module and handed out pair-first as (B, 2): column 0 the
image anchor, column 1 the text anchor, as `Strategy.temperatures()` reports them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Clock
from .losses import first_visit_gamma

GAMMA_SCHEDULES = ("constant", "cosine")


def similarity(z_img: Tensor, z_txt: Tensor) -> Tensor:
    """(B, B) cosine similarities, S[i, j] = z_img[i] · z_txt[j]."""
    return z_img @ z_txt.T


def anchor_differences(sim: Tensor) -> Tensor:
    """(2, B, B) h[0, i, j] = S_ij − S_ii (image anchor i, text j) and h[1, i, j] = S_ji − S_ii (text anchor i,
    image j). The diagonal h[:, i, i] is 0: the positive."""
    positive = sim.diagonal()[:, None]
    return torch.stack([sim - positive, sim.T - positive])


@lru_cache(maxsize=16)
def _eye(batch: int, device: torch.device) -> Tensor:
    return torch.eye(batch, dtype=torch.bool, device=device)


def positive_mask(batch: int, device: torch.device) -> Tensor:
    """(B, B) bool, True on the diagonal: the one column of each anchor that is not a negative."""
    return _eye(batch, torch.device(device))


def clip_loss(z_img: Tensor, z_txt: Tensor, tau: Tensor | float) -> Tensor:
    """CLIP's symmetric cross-entropy (Radford et al., 2021): ½ [mean_i −log softmax_j(S_ij/τ)_i + mean_i −log
    softmax_j(S_ji/τ)_i]; the positive is in each denominator. tau: a float or a scalar tensor (learnable τ)."""
    logits = similarity(z_img, z_txt) / tau
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def gamma_at(gamma: float, schedule: str, decay_epochs: float | None, clock: Clock) -> float:
    """The moving-average weight γ_e of epoch e = `clock.epoch` (0-based). "constant": γ. "cosine" (FastCLIP,
    LibAUC): γ + ½(1 − γ)(1 + cos(π e / E_d)) while e < E_d, then γ; it starts at 1. E_d = `decay_epochs`, or
    half the run when None (FastCLIP's README recommendation)."""
    if schedule == "constant":
        return gamma
    if schedule != "cosine":
        raise ValueError(f"unknown gamma_schedule {schedule!r}; valid: {', '.join(GAMMA_SCHEDULES)}")
    span = decay_epochs if decay_epochs is not None else 0.5 * clock.epochs
    if clock.epoch >= span:
        return gamma
    return gamma + 0.5 * (1.0 - gamma) * (1.0 + math.cos(math.pi * clock.epoch / span))


@dataclass
class BimodalGCLStep:
    """One moving-average step of the global contrastive loss on both sides (per-anchor rows are (B, 2))."""

    loss: Tensor  # scalar surrogate L_3; its gradient is the sum of the two sides' weight gradients
    log_u: Tensor  # (B, 2) fresh log u of each anchor, detached: the state to write back
    weighted_h: Tensor  # (B, 2) Ĥ_i = (1/(B−1)) Σ_j p_ij h_ij, detached


def gcl_step(sim: Tensor, tau: Tensor, log_u_old: Tensor, gamma: float, first_visit: str = "sample",
             include_positive: bool = False) -> BimodalGCLStep:
    """Steps 1–4 of the bimodal GCL/RGCL estimator (SogCLR; iSogCLR with per-anchor τ), README.md, `sogclr`
    (image_text).

    sim: (B, B) similarities. tau: (B, 2) temperature of each image and text anchor. log_u_old: (B, 2) log u[idx],
    −inf where never visited (γ_i then follows `first_visit`, per side). `include_positive`: also count the
    positive (h = 0) in g and u, as the iSogCLR authors' code does. Log domain throughout, so it stays finite for τ
    down to 0.005 where exp(h/τ) would overflow float32.
    """
    batch = sim.shape[0]
    num_neg = batch - 1
    h = anchor_differences(sim)
    with torch.no_grad():
        logits = h / tau.T[:, :, None]
        if not include_positive:
            logits = logits.masked_fill(positive_mask(batch, sim.device), float("-inf"))
        log_g = torch.logsumexp(logits, dim=2) - math.log(num_neg)
        gamma_i = torch.stack([first_visit_gamma(side, gamma, first_visit) for side in log_u_old.T])
        # γ_i = 1 gives log1p(−1) = −inf: the old u is dropped even where it is −inf itself
        log_u = torch.logaddexp(torch.log1p(-gamma_i) + log_u_old.T, torch.log(gamma_i) + log_g)
        weights = (logits - log_u[:, :, None]).exp()  # p_ij = exp(h_ij/τ_i) / u_i; 0 where masked
    weighted = (weights * h).sum(dim=2) / num_neg  # (2, B), differentiable through h only
    loss = weighted.sum(dim=0).mean()
    return BimodalGCLStep(loss=loss, log_u=log_u.T.detach(), weighted_h=weighted.T.detach())
