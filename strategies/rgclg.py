"""`rgclg` (image–text): RGCL-g, the robust global contrastive loss with one learnable global τ, as FastCLIP-v3
trains it (Wei et al., "FastCLIP: A Suite of Optimization Techniques to Accelerate CLIP Training with Limited
Resources", arXiv 2407.01445; `--fastclip --multiply_tau --temperature_scheme global_learnable`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Clock, StepOut
from .gcl_image_text import ImageTextGCL, check_moving_average
from .registry import register_strategy
from .spec import check_range, frozen, log_uniform, uniform


@dataclass(frozen=True)
class RGCLgConfig:
    """FastCLIP-v3's CC3M recipe (README: ρ 6.5, lr_tau 2e-4, γ 0.2 cosine over half the run) with ρ rescaled from
    its global batch of 1024 to 128 by log(B − 1): 6.5 · log 127 / log 1023 ≈ 4.5 (README.md, `rgclg`)."""

    tau_init: float = 0.07
    tau_min: float = 0.01  # θ = log(1/τ) is clamped to [log(1/τ_max), log(1/τ_min)] = [0, ln 100] after each step
    tau_max: float = 1.0
    rho: float = 4.5
    tau_lr: float = 2e-4  # Adam learning rate of θ
    tau_lr_threshold: float = 0.03  # FastCLIP's step_thresh: while τ <= 0.03 ...
    tau_lr_ratio: float = 1.0 / 3.0  # ... θ's learning rate is multiplied by this
    adam_beta1: float = 0.9  # the model's Adam values in FastCLIP (ResNet: 0.9, 0.999, 1e-8)
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    gamma: float = 0.2
    gamma_schedule: str = "cosine"
    gamma_decay_epochs: float | None = None  # None = half the run (FastCLIP: 18 of 37 epochs)
    first_visit: str = "sample"  # FastCLIP: γ = 1 in epoch 0 and u <- g for pairs with no u yet: "sample"

    def __post_init__(self) -> None:
        check_range("tau_min", self.tau_min, 0.0, None, low_open=True)
        check_range("tau_max", self.tau_max, self.tau_min, None)
        check_range("tau_init", self.tau_init, self.tau_min, self.tau_max)
        check_range("rho", self.rho, 0.0, None)
        check_range("tau_lr", self.tau_lr, 0.0, None)
        check_range("tau_lr_threshold", self.tau_lr_threshold, 0.0, None)
        check_range("tau_lr_ratio", self.tau_lr_ratio, 0.0, None, low_open=True)
        check_range("adam_beta1", self.adam_beta1, 0.0, 1.0, high_open=True)
        check_range("adam_beta2", self.adam_beta2, 0.0, 1.0, high_open=True)
        check_range("adam_eps", self.adam_eps, 0.0, None, low_open=True)
        check_moving_average(self)


@register_strategy("rgclg", pairing="image_text")
class RGCLg(ImageTextGCL):
    """F(w, τ) = τ [ρ + ½ (1/n) Σ_i (log g^I_i + log g^T_i)], one global τ = exp(−θ), positives masked.

    The weight gradient is FastCLIP's, ½ ∇L_3 (the loss returned is ½ L_3). θ follows **FastCLIP's θ-gradient,
    which is not the chain-rule derivative of F**: ∂/∂θ = (1/B) Σ_i (Ĥ^I_i + Ĥ^T_i) − τ(ρ + M), with
    M = (1/2B) Σ_i (log u^I_i + log u^T_i); the exact derivative has 1/(2B) in front of the Ĥ sum. FastCLIP counts
    Ĥ twice, and its published ρ is tuned to that, so this reproduces it (README.md, `rgclg`).

    θ is a buffer, not an `nn.Parameter`: `update()` takes FastCLIP's optimiser step on it itself (Adam with no
    weight decay, learning rate `tau_lr`, divided by 3 while τ <= 0.03, then the clamp), so the run's optimiser —
    SGD, LARS or AdamW — never touches it and the τ trajectory is the reference's whatever it is. Buffers:
    `log_u` (N, 2), `log_inv_tau` (θ), `adam_m`, `adam_v`, `adam_steps`.
    """

    Config = RGCLgConfig
    tau_hyperparameters = ("tau_init", "tau_min", "tau_max")
    space = frozen(rho=uniform(1.0, 6.0), tau_lr=log_uniform(2e-5, 2e-3), gamma=uniform(0.1, 0.9))
    grid = frozen(rho=(2.0, 3.0, 4.0, 4.5, 5.0, 6.0), tau_lr=(5e-5, 2e-4, 1e-3))

    def __init__(self, num_samples: int, config: RGCLgConfig) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("log_inv_tau", torch.tensor(math.log(1.0 / config.tau_init)))
        self.register_buffer("adam_m", torch.tensor(0.0))
        self.register_buffer("adam_v", torch.tensor(0.0))
        self.register_buffer("adam_steps", torch.tensor(0, dtype=torch.int64))

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """The bimodal GCL step at τ = exp(−θ) for every anchor; loss ½ L_3 and FastCLIP's θ-gradient, saved."""
        c = self.config
        tau_now = torch.exp(-self.log_inv_tau.to(z1.dtype))
        tau = tau_now.expand(self.tau_shape(z1.shape[0]))
        res = self.gcl(z1, z2, idx, clock, tau)
        with torch.no_grad():
            mean_log_u = res.log_u.mean()  # M
            # FastCLIP's: (1/B) Σ_i (Ĥ^I_i + Ĥ^T_i), twice the chain rule's (1/2B), to match its published ρ
            theta_grad = res.weighted_h.sum(dim=1).mean() - tau_now * (c.rho + mean_log_u)
            objective = tau_now * (c.rho + mean_log_u)
        logs = {"tau": tau_now, "theta_grad": theta_grad, "objective": objective,
                "gamma": torch.tensor(self.gamma(clock), device=z1.device)}
        return StepOut(loss=0.5 * res.loss, tau=tau, logs=logs, saved={"log_u": res.log_u, "theta_grad": theta_grad})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """The fresh log u, then FastCLIP's Adam step on θ (bias-corrected per step, lr cut below the threshold) and
        the clamp to [log(1/τ_max), log(1/τ_min)]."""
        super().update(out, idx, clock)
        c = self.config
        grad = out.saved["theta_grad"].to(self.log_inv_tau.dtype)
        # step_thresh is evaluated on τ before this step, as FastCLIP's scheduler runs before the optimiser
        slow = (torch.exp(-self.log_inv_tau) <= c.tau_lr_threshold).to(grad.dtype)  # a tensor: no host sync
        lr = c.tau_lr * (1.0 + (c.tau_lr_ratio - 1.0) * slow)
        self.adam_steps += 1
        steps = self.adam_steps.to(grad.dtype)
        self.adam_m.mul_(c.adam_beta1).add_((1.0 - c.adam_beta1) * grad)
        self.adam_v.mul_(c.adam_beta2).add_((1.0 - c.adam_beta2) * grad * grad)
        m_hat = self.adam_m / (1.0 - c.adam_beta1 ** steps)
        v_hat = self.adam_v / (1.0 - c.adam_beta2 ** steps)
        self.log_inv_tau.sub_(lr * m_hat / (v_hat.sqrt() + c.adam_eps))
        self.log_inv_tau.clamp_(math.log(1.0 / c.tau_max), math.log(1.0 / c.tau_min))

    def temperatures(self) -> Tensor:
        """exp(−θ) for both anchors of every pair (τ is stored as θ, not in a τ buffer)."""
        return torch.exp(-self.log_inv_tau).expand(self.tau_shape(self.num_samples)).clone()
