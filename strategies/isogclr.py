"""`isogclr`: individualised temperatures τ_i by distributionally robust optimisation (Qiu, Hu, Yuan, Zhou, Zhang, Yang,
"Not All Semantics are Created Equal: Contrastive Self-supervised Learning with Automatic Temperature
Individualization", ICML 2023, arXiv 2305.11965), unimodal version."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Clock, StepOut, Strategy
from .losses import FIRST_VISIT_RULES, global_contrastive_step, momentum_tau_step
from .registry import register_strategy
from .spec import check_choice, check_range, frozen, log_uniform, uniform


@dataclass(frozen=True)
class ISogCLRConfig:
    """Defaults (preset "authors"): the authors' CIFAR recipe. `preset="libauc"` gives LibAUC 2.0.1 `GCLoss_v1`'s."""

    tau_init: float = 0.1
    tau_min: float = 0.05
    tau_max: float = 1.0
    rho: float = 0.4  # KL radius: larger ρ -> smaller τ -> harder negatives
    eta: float = 0.03  # step size of the τ update
    beta: float = 0.5  # momentum weight of the new τ-gradient
    gamma: float = 0.8  # moving-average weight of the new batch estimate of u
    grad_clip: float | None = 3.0  # clamp of the τ-gradient; None = no clipping
    first_visit: str = "sample"  # γ = 1 on a sample's first visit: per "sample", per "batch" (LibAUC), or "none"

    def __post_init__(self) -> None:
        check_range("tau_min", self.tau_min, 0.0, None, low_open=True)
        check_range("tau_max", self.tau_max, self.tau_min, None)
        check_range("tau_init", self.tau_init, self.tau_min, self.tau_max)
        check_range("rho", self.rho, 0.0, None)
        check_range("eta", self.eta, 0.0, None)
        check_range("beta", self.beta, 0.0, 1.0, low_open=True)
        check_range("gamma", self.gamma, 0.0, 1.0, low_open=True)
        if self.grad_clip is not None:
            check_range("grad_clip", self.grad_clip, 0.0, None, low_open=True)
        check_choice("first_visit", self.first_visit, FIRST_VISIT_RULES)


@register_strategy("isogclr")
class ISogCLR(Strategy):
    """SogCLR's estimator with a per-sample τ_i, updated by momentum SGD on ∂F/∂τ_i = log u_i + ρ − E_p[s]/τ_i
    (README.md, `isogclr`). Buffers: `log_u` (−inf = never visited), `tau`, `tau_grad_momentum`.
    """

    Config = ISogCLRConfig
    per_sample_state = True
    per_sample_tau = True
    tau_hyperparameters = ("tau_init", "tau_min", "tau_max")
    shares_estimator_with = "sogclr"  # the same moving-average u_i with one global τ: its τ-matched control
    presets = frozen(
        authors=ISogCLRConfig(),  # the defaults
        libauc=ISogCLRConfig(tau_init=0.1, tau_min=0.05, tau_max=0.7, rho=0.3, eta=0.01, beta=0.9, gamma=0.9,
                             grad_clip=None, first_visit="batch"),  # LibAUC 2.0.1 GCLoss_v1's constructor
    )
    space = frozen(rho=uniform(0.05, 0.8), tau_init=log_uniform(0.05, 1.0), eta=log_uniform(3e-3, 0.1),
                   beta=uniform(0.3, 0.95), gamma=uniform(0.5, 1.0))
    grid = frozen(rho=(0.1, 0.2, 0.3, 0.4, 0.5, 0.7), tau_init=(0.1, 0.3, 0.7))

    def __init__(self, num_samples: int, config: ISogCLRConfig) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("log_u", torch.full((num_samples,), float("-inf")))
        self.register_buffer("tau", torch.full((num_samples,), config.tau_init))
        self.register_buffer("tau_grad_momentum", torch.zeros(num_samples))

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """SogCLR's steps 1–5 at τ_i = tau[idx_i], and step 6, the τ-gradient G_i, saved for `update`."""
        c = self.config
        tau_b = self.tau[idx].to(z1.dtype)
        tau_rows = torch.cat([tau_b, tau_b])[:, None]  # both views' anchors of sample i use τ_i
        res = global_contrastive_step(z1, z2, tau_rows, self.log_u[idx].to(z1.dtype), c.gamma, c.first_visit)
        with torch.no_grad():
            # G = log u + ρ − (1/K) Σ_k p_k s_k / τ per anchor row (step 6), averaged over the sample's two views
            grad_rows = res.log_u_rows + c.rho - res.weighted_sim / tau_rows[:, 0]
            batch = z1.shape[0]
            tau_grad = 0.5 * (grad_rows[:batch] + grad_rows[batch:])
            if c.grad_clip is not None:
                tau_grad = tau_grad.clamp(-c.grad_clip, c.grad_clip)
            objective = (tau_b * (res.new_log_u + c.rho)).mean() - res.positive_sim.mean()
        logs = {"tau_mean": tau_b.mean(), "tau_min": tau_b.min(), "tau_max": tau_b.max(),
                "tau_grad_mean": tau_grad.mean(), "objective": objective}
        return StepOut(loss=res.loss, tau=tau_b, logs=logs,
                       saved={"new_log_u": res.new_log_u, "tau_grad": tau_grad})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """Step 7: the fresh log u, then momentum SGD on the batch's τ_i, clamped to [τ_min, τ_max]."""
        c = self.config
        self.log_u[idx] = out.saved["new_log_u"].to(self.log_u.dtype)
        self.tau[idx], self.tau_grad_momentum[idx] = momentum_tau_step(
            self.tau[idx], self.tau_grad_momentum[idx], out.saved["tau_grad"], c.eta, c.beta, c.tau_min, c.tau_max)
