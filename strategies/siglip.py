"""`siglip`: the pairwise sigmoid loss with a learnable scale t = 1/τ and a learnable bias b (Zhai, Mustafa,
Kolesnikov, Beyer, "Sigmoid Loss for Language Image Pre-Training", ICCV 2023, arXiv 2303.15343). image_text: open_clip's
`SigLipLoss` exactly (single process). views: this project's form, every other view of the batch a negative (SigCLR's
setup, Çağatan 2024, arXiv 2410.17427)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Clock, StepOut
from .bimodal_losses import similarity
from .global_tau import GlobalTauStrategy
from .losses import positive_columns, similarity_matrix
from .registry import register_strategy
from .spec import check_range, frozen, log_uniform, uniform


@dataclass(frozen=True)
class SigLIPConfig:
    """`siglip`: where t = 1/τ and b start (open_clip's `--siglip`: t′ = log 10, b = −10), t's clamp, their lr."""

    tau_init: float = 0.1  # t = 10
    bias_init: float = -10.0  # b < 0 starts every pair as "negative", as all but one per row are (SigLIP's remedy)
    tau_min: float = 0.01  # t <= 100: open_clip clamps t′ = log t to [0, ln 100] after every step, SigLIP included
    tau_max: float = 1.0
    tau_lr: float = 0.01  # lr of t′ and b (no weight decay); `learnable`'s default, open_clip uses the model's lr

    def __post_init__(self) -> None:
        check_range("tau_min", self.tau_min, 0.0, None, low_open=True)
        check_range("tau_max", self.tau_max, self.tau_min, None)
        check_range("tau_init", self.tau_init, self.tau_min, self.tau_max)
        check_range("bias_init", self.bias_init, -100.0, 100.0)  # finite (NaN fails); |b| > t fixes every sign
        check_range("tau_lr", self.tau_lr, 0.0, None)


def sigmoid_pair_loss(logits: Tensor, positive: Tensor, candidate: Tensor | None = None) -> Tensor:
    """(1/R) Σ_r Σ_c −log σ(y_rc ℓ_rc): an independent binary term per (anchor, candidate) pair, summed over the
    candidates and averaged over the R anchor rows; y = +1 at each row's positive column, −1 elsewhere.

    logits: (R, C); positive: (R,) the positive's column; candidate: (R, C) bool, False where a column is no
    candidate (the anchor itself, for views), None for all. `logsigmoid` keeps its digits where 1 − σ would not;
    the caller runs in float32 or wider (bf16 spacing near |ℓ| = 100 is 0.5)."""
    labels = torch.full_like(logits, -1.0).scatter_(1, positive[:, None], 1.0)
    terms = -F.logsigmoid(labels * logits)
    if candidate is not None:
        terms = terms.masked_fill(~candidate, 0.0)
    return terms.sum() / logits.shape[0]


def siglip_views(z1: Tensor, z2: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """This project's views form: the 2B anchors of S = Z Zᵀ (2B × 2B), diagonal removed, against their positive and
    2B − 2 negatives: L = (1/2B) Σ_r Σ_{c ≠ r} softplus(−y_rc (t s_rc + b)). z1, z2: (B, d) normalised; scale, bias:
    0-d."""
    batch = z1.shape[0]
    logits = scale * similarity_matrix(z1, z2) + bias
    candidate = ~torch.eye(2 * batch, dtype=torch.bool, device=z1.device)
    return sigmoid_pair_loss(logits, positive_columns(batch, z1.device), candidate)


def siglip_image_text(z_img: Tensor, z_txt: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """open_clip's `SigLipLoss` (single process): logits = t S + b (B × B), y = 2I − 1,
    L = −Σ_ij log σ(y_ij ℓ_ij) / B. Each pair counts once: rows only, no transposed second pass."""
    logits = scale * similarity(z_img, z_txt) + bias
    return sigmoid_pair_loss(logits, torch.arange(logits.shape[0], device=logits.device))


SIGLIP_LOSSES = {"views": siglip_views, "image_text": siglip_image_text}


@register_strategy("siglip")
class SigLIP(GlobalTauStrategy):
    """SigLIP (Zhai et al., ICCV 2023): pairwise sigmoid loss, learnable t = 1/τ and bias b (views: all 2B − 1 others).

    Parameters t′ = log t (`log_inv_tau`, as open_clip's `logit_scale`) and b (`bias`, its `logit_bias`), both in
    the strategy's group (`tau_lr`, no weight decay). After every optimiser step t′ is clamped to
    [log(1/τ_max), log(1/τ_min)] = [0, ln 100] by default, as open_clip does; b is not clamped (no reference does).
    `temperatures()` reports τ = exp(−t′) for every sample; τ and b are logged every step. The loss is a sum over
    candidates, so its gradient scale is not comparable with the cross-entropy strategies'."""

    Config = SigLIPConfig
    learnable = True
    tau_hyperparameters = ("tau_init", "tau_min", "tau_max")
    space = frozen(tau_init=log_uniform(0.03, 0.3), bias_init=uniform(-12.0, 0.0), tau_lr=log_uniform(1e-4, 1e-1))
    grid = frozen(tau_init=(0.05, 0.1, 0.2), bias_init=(-10.0, -5.0, -2.71, 0.0), tau_lr=(1e-3, 1e-2, 1e-1))

    def __init__(self, num_samples: int, config: SigLIPConfig) -> None:
        super().__init__(num_samples, config)
        self.log_inv_tau = nn.Parameter(torch.tensor(math.log(1.0 / config.tau_init)))
        self.bias = nn.Parameter(torch.tensor(config.bias_init))

    def initial_tau(self) -> float:
        """τ_init (asked before t′ exists)."""
        return self.config.tau_init

    def tau_at(self, clock: Clock) -> Tensor:
        """τ = exp(−t′), a 0-d tensor that carries t′'s gradient."""
        return torch.exp(-self.log_inv_tau)

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """The pairing's sigmoid loss at t = exp(t′) (multiplied, as open_clip does, not divided by τ) and b."""
        scale, bias = torch.exp(self.log_inv_tau).to(z1.dtype), self.bias.to(z1.dtype)
        loss = SIGLIP_LOSSES[self.pairing](z1, z2, scale, bias)
        tau = (1.0 / scale).detach()
        return StepOut(loss=loss, tau=tau.expand(self.tau_shape(z1.shape[0])),
                       logs={"tau": tau, "bias": bias.detach()}, saved={"tau": tau})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """Clamp t′ after the optimiser's step (open_clip's `logit_scale.clamp_(0, ln 100)`) and record τ."""
        self.log_inv_tau.clamp_(math.log(1.0 / self.config.tau_max), math.log(1.0 / self.config.tau_min))
        self.last_tau.copy_(torch.exp(-self.log_inv_tau))


@register_strategy("siglip", pairing="image_text")
class SigLIPImageText(SigLIP):
    """SigLIP (Zhai et al., ICCV 2023) as open_clip's `SigLipLoss`: L = −Σ_ij log σ(y_ij (t S_ij + b)) / B, y = 2I − 1.

    Same parameters, clamp, defaults (t = 10, b = −10) and logs as the views class; only the loss differs
    (`SIGLIP_LOSSES`, picked by pairing)."""
