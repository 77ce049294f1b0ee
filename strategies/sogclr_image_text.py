"""`sogclr` for image–text pairs: one global τ and a moving-average estimator of the bimodal global contrastive loss
(Yuan et al., ICML 2022, arXiv 2202.12387; LibAUC `GCLoss_v2` "global_constant"; FastCLIP-v1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Clock, StepOut
from .gcl_image_text import ImageTextGCL, check_moving_average
from .registry import register_strategy
from .spec import check_range, frozen, log_uniform, uniform


@dataclass(frozen=True)
class SogCLRImageTextConfig:
    """`sogclr` (image_text): τ, γ and its schedule, and the estimator's first-visit and positive rules."""

    tau: float = 0.01  # the iSogCLR authors' and LibAUC's value (FastCLIP-v1 uses 0.07)
    gamma: float = 0.8  # the iSogCLR authors' value; LibAUC 0.9, FastCLIP 0.2–0.8 with the cosine schedule
    gamma_schedule: str = "constant"  # or "cosine": γ from 1 down to `gamma` over gamma_decay_epochs
    gamma_decay_epochs: float | None = None  # E_d of the cosine schedule; None = half the run
    first_visit: str = "sample"  # γ = 1 on a pair's first visit: per "sample", per "batch" (LibAUC), or "none"
    include_positive: bool = False  # True: the positive counts in g and u, as in the iSogCLR authors' code

    def __post_init__(self) -> None:
        check_range("tau", self.tau, 0.0, None, low_open=True)
        check_moving_average(self)


@register_strategy("sogclr", pairing="image_text")
class SogCLRImageText(ImageTextGCL):
    """Per-pair state log u^I, log u^T (buffer `log_u`, (N, 2)) tracks E_{j≠i} exp(h_ij/τ) of each image and text
    anchor; negatives are weighted by p_ij = exp(h_ij/τ)/u_i (README.md, `sogclr` (image_text)).

    The loss returned is the surrogate L_3 = (1/B) Σ_i (1/(B−1)) Σ_{j≠i} [p^I_ij h^I_ij + p^T_ij h^T_ij], whose
    gradient is the stochastic gradient of F = (1/n) Σ_i τ[log g^I_i + log g^T_i] (the two sides summed, scale 1 as
    the iSogCLR authors'); `objective` logs F̂ = τ · mean_i (log u^I_i + log u^T_i).
    """

    Config = SogCLRImageTextConfig
    tau_hyperparameters = ("tau",)
    presets = frozen(
        default=SogCLRImageTextConfig(),
        # LibAUC 2.0.1 GCLoss_v2 ("global" τ): γ 0.9 and its batch-wide first-visit rule, τ as ours
        libauc=SogCLRImageTextConfig(tau=0.01, gamma=0.9, first_visit="batch"),
    )
    space = frozen(tau=log_uniform(0.005, 0.1), gamma=uniform(0.2, 1.0))
    grid = frozen(tau=(0.005, 0.01, 0.02, 0.03, 0.05, 0.07), gamma=(0.2, 0.5, 0.8, 0.9))

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """The bimodal GCL step (`ImageTextGCL.gcl`) with one τ for every anchor of both sides."""
        c = self.config
        tau = torch.full(self.tau_shape(z1.shape[0]), c.tau, dtype=z1.dtype, device=z1.device)
        res = self.gcl(z1, z2, idx, clock, tau, c.include_positive)
        logs = {"tau": tau[0, 0], "gamma": torch.tensor(self.gamma(clock), device=z1.device),
                "objective": c.tau * res.log_u.sum(dim=1).mean()}
        return StepOut(loss=res.loss, tau=tau, logs=logs, saved={"log_u": res.log_u})

    def temperatures(self) -> Tensor:
        """The config's τ for both anchors of every pair (τ is a constant here, so no buffer holds it)."""
        return torch.full_like(self.log_u, self.config.tau)
