"""`isogclr`: individualised temperatures τ_i by distributionally robust optimisation (Qiu, Hu, Yuan, Zhou, Zhang, Yang,
"Not All Semantics are Created Equal: Contrastive Self-supervised Learning with Automatic Temperature
Individualization", ICML 2023, arXiv 2305.11965), unimodal version."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .base import Clock, StepOut, Strategy, check_choice, check_range
from .losses import FIRST_VISIT_RULES, global_contrastive_step, momentum_tau_step
from .registry import register_strategy


@dataclass(frozen=True)
class ISogCLRConfig:
    """Defaults: the authors' CIFAR recipe. `preset="libauc"` gives LibAUC 2.0.1 `GCLoss_v1`'s."""

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


PRESETS = {
    "authors": ISogCLRConfig(),
    "libauc": ISogCLRConfig(tau_init=0.1, tau_min=0.05, tau_max=0.7, rho=0.3, eta=0.01, beta=0.9, gamma=0.9,
                            grad_clip=None, first_visit="batch"),
}


@register_strategy("isogclr")
class ISogCLR(Strategy):
    """SogCLR's estimator with a per-sample τ_i, updated by momentum SGD on ∂F/∂τ_i = log u_i + ρ − E_p[s]/τ_i
    (README.md, `isogclr`). Buffers: `log_u` (−inf = never visited), `tau`, `tau_grad_momentum`.
    """

    Config = ISogCLRConfig
    per_sample_state = True
    per_sample_tau = True
    tau_hyperparameters = ("tau_init", "tau_min", "tau_max")
    build_options = ("preset",)

    def __init__(self, num_samples: int, config: ISogCLRConfig) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("log_u", torch.full((num_samples,), float("-inf")))
        self.register_buffer("tau", torch.full((num_samples,), config.tau_init))
        self.register_buffer("tau_grad_momentum", torch.zeros(num_samples))

    @classmethod
    def build_config(cls, preset: str = "authors", **hyperparameters: Any) -> ISogCLRConfig:
        """`preset` in {"authors" (default), "libauc"} picks the base values; keyword hyperparameters override them."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r} for strategy 'isogclr'; valid: {sorted(PRESETS)}")
        super().build_config(**hyperparameters)  # unknown names fail here, naming the valid ones
        return dataclasses.replace(PRESETS[preset], **hyperparameters)

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        c = self.config
        tau_b = self.tau[idx].to(z1.dtype)
        tau_rows = torch.cat([tau_b, tau_b])[:, None]
        res = global_contrastive_step(z1, z2, tau_rows, self.log_u[idx].to(z1.dtype), c.gamma, c.first_visit)
        with torch.no_grad():
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
        c = self.config
        self.log_u[idx] = out.saved["new_log_u"].to(self.log_u.dtype)
        self.tau[idx], self.tau_grad_momentum[idx] = momentum_tau_step(
            self.tau[idx], self.tau_grad_momentum[idx], out.saved["tau_grad"], c.eta, c.beta, c.tau_min, c.tau_max)

    def temperatures(self) -> Tensor:
        return self.tau.clone()

    def tau_bounds(self) -> tuple[float, float]:
        return (self.config.tau_min, self.config.tau_max)

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None) -> dict[str, Any]:
        return {"rho": trial.suggest_float("rho", 0.05, 0.8),
                "tau_init": trial.suggest_float("tau_init", 0.05, 1.0, log=True),
                "eta": trial.suggest_float("eta", 3e-3, 0.1, log=True),
                "beta": trial.suggest_float("beta", 0.3, 0.95),
                "gamma": trial.suggest_float("gamma", 0.5, 1.0)}

    @classmethod
    def search_grid(cls, *, epochs: int | None = None) -> dict[str, list[Any]]:
        return {"rho": [0.1, 0.2, 0.3, 0.4, 0.5, 0.7], "tau_init": [0.1, 0.3, 0.7]}
