"""`sogclr`: global τ with a moving-average estimator of the global contrastive loss (Yuan et al., "Provable Stochastic
Optimization for Global Contrastive Learning: Small Batch Does Not Harm Performance", ICML 2022, arXiv 2202.12387)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Clock, StepOut, Strategy
from .losses import FIRST_VISIT_RULES, global_contrastive_step
from .registry import register_strategy
from .spec import check_choice, check_range, frozen, log_uniform, uniform


@dataclass(frozen=True)
class SogCLRConfig:
    """`sogclr` (views): τ, the moving-average weight γ of u and the first-visit rule (README.md, `sogclr`)."""

    tau: float = 0.1
    gamma: float = 0.9  # moving-average weight of the new batch estimate; 1 = no memory
    first_visit: str = "sample"  # γ = 1 on a sample's first visit: per "sample", per "batch" (LibAUC), or "none"

    def __post_init__(self) -> None:
        check_range("tau", self.tau, 0.0, None, low_open=True)
        check_range("gamma", self.gamma, 0.0, 1.0, low_open=True)
        check_choice("first_visit", self.first_visit, FIRST_VISIT_RULES)


@register_strategy("sogclr")
class SogCLR(Strategy):
    """Per-sample state u ∈ R^N (stored as log u; −inf = never visited) tracks E_k exp(s_ik/τ) across epochs, and the
    negatives of anchor i are weighted by exp(s_ik/τ)/u_i (README.md, `sogclr`).

    The returned loss is a surrogate whose gradient is SogCLR's; its value is not the objective, which is logged as
    `objective` = τ · mean_i log u_i − mean_i s⁺_i.
    """

    Config = SogCLRConfig
    per_sample_state = True  # u is per sample; τ is global
    tau_hyperparameters = ("tau",)
    space = frozen(tau=log_uniform(0.05, 1.0), gamma=uniform(0.5, 1.0))
    grid = frozen(tau=(0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0))

    def __init__(self, num_samples: int, config: SogCLRConfig) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("log_u", torch.full((num_samples,), float("-inf")))

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """Steps 1–5 of SogCLR from the stored log u of the batch's samples; the fresh log u is saved for `update`."""
        tau = self.config.tau
        res = global_contrastive_step(z1, z2, tau, self.log_u[idx].to(z1.dtype), self.config.gamma,
                                      self.config.first_visit)
        tau_b = torch.full((z1.shape[0],), tau, dtype=z1.dtype, device=z1.device)
        objective = tau * res.new_log_u.mean() - res.positive_sim.mean()
        return StepOut(loss=res.loss, tau=tau_b, logs={"tau": tau_b[0], "objective": objective},
                       saved={"new_log_u": res.new_log_u})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """u[idx] ← (u1 + u2)/2, in log space."""
        self.log_u[idx] = out.saved["new_log_u"].to(self.log_u.dtype)

    def temperatures(self) -> Tensor:
        """The config's τ for every sample (τ is a constant here, so no buffer holds it)."""
        return torch.full_like(self.log_u, self.config.tau)
