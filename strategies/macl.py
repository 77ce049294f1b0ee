"""`macl`: model-aware contrastive learning, τ set by the batch's alignment, with reweighted anchors (Huang, Yi, Zhao,
"Model-Aware Contrastive Learning: Towards Escaping the Dilemmas", ICML 2023, arXiv 2207.07874). Views: lightly's
`MACLLoss` exactly. image_text: this project's adaptation (no reference implements it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Clock, StepOut, Strategy, check_range
from .bimodal_losses import similarity
from .losses import positive_columns, similarity_matrix
from .registry import register_strategy

V_EPS = 1e-8  # lightly's guard in V = 1/(1 − P + ε)


@dataclass(frozen=True)
class MACLConfig:
    """lightly's defaults and ranges (t_0 0.1, α 0.5, A_0 0; α and A_0 in [0, 1])."""

    tau_0: float = 0.1  # base temperature
    alpha: float = 0.5  # how far τ moves with the alignment
    a_0: float = 0.0  # alignment threshold A_0

    def __post_init__(self) -> None:
        check_range("tau_0", self.tau_0, 0.0, None, low_open=True)
        check_range("alpha", self.alpha, 0.0, 1.0)
        check_range("a_0", self.a_0, 0.0, 1.0)
        low = self.tau_0 * (1.0 - self.alpha * (1.0 + self.a_0))
        if low <= 0.0:
            raise ValueError(f"tau_0·(1 − alpha·(1 + a_0)) must be > 0 (τ at alignment A = −1), got {low:g}: "
                             f"use alpha·(1 + a_0) < 1")


def reweighted_nll(logits: Tensor, positive: Tensor) -> Tensor:
    """mean_r −V_r log P_r over anchor rows: P_r = softmax(logits_r)[positive_r] (the positive in the denominator),
    V_r = sg(1/(1 − P_r + 1e-8)). logits: (R, C), −inf at columns that are not candidates; positive: (R,).

    With r the other candidates' mass relative to the positive, log r = logsumexp_c(logits_rc − logits_r,pos):
    −log P = softplus(log r) and 1 − P = σ(log r). Both keep their digits as P → 1, where V reaches 1e8 and the plain
    forms (1 − P, log_softmax) would hand it the rounding error of 1 instead."""
    pos = logits.gather(1, positive[:, None])
    log_r = torch.logsumexp((logits - pos).scatter(1, positive[:, None], float("-inf")), dim=1)
    nll = F.softplus(log_r)
    with torch.no_grad():
        weight = 1.0 / (torch.sigmoid(log_r) + V_EPS)
    return (weight * nll).mean()


class MACLBase(Strategy):
    """τ = τ_0 (1 + α (A − A_0)), A the batch's mean positive cosine, detached: τ gets no gradient. Buffer
    `last_tau`: the τ of the last step (τ_0 before the first), which `temperatures()` reports for every sample."""

    Config = MACLConfig
    tau_hyperparameters = ("tau_0",)

    def __init__(self, num_samples: int, config: MACLConfig) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("last_tau", torch.tensor(config.tau_0))

    @classmethod
    def pinned_tau_hyperparameters(cls, tau: float) -> dict[str, Any]:
        return {"tau_0": tau, "alpha": 0.0}  # α = 0: τ = τ_0 whatever the alignment

    def anchor_logits(self, z1: Tensor, z2: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
        """(logits (R, C) with −inf at non-candidates, positive column (R,)) of every anchor."""
        raise NotImplementedError

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        c = self.config
        alignment = (z1 * z2).sum(dim=1).mean().detach()  # the mean positive cosine, A
        tau = c.tau_0 * (1.0 + c.alpha * (alignment - c.a_0))
        logits, positive = self.anchor_logits(z1, z2, tau)
        loss = reweighted_nll(logits, positive)
        return StepOut(loss=loss, tau=tau.expand(self.tau_shape(z1.shape[0])),
                       logs={"tau": tau, "alignment": alignment}, saved={"tau": tau})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        self.last_tau.copy_(out.saved["tau"])

    def temperatures(self) -> Tensor:
        return self.last_tau.expand(self.tau_shape(self.num_samples)).clone()

    def tau_bounds(self) -> tuple[float, float]:
        c = self.config  # A ranges over [−1, 1]
        return (c.tau_0 * (1.0 - c.alpha * (1.0 + c.a_0)), c.tau_0 * (1.0 + c.alpha * (1.0 - c.a_0)))

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None) -> dict[str, Any]:
        return {"tau_0": trial.suggest_float("tau_0", 0.02, 0.5, log=True),
                "alpha": trial.suggest_float("alpha", 0.0, 0.9)}

    @classmethod
    def search_grid(cls, *, epochs: int | None = None) -> dict[str, list[Any]]:
        return {"tau_0": [0.05, 0.1, 0.2, 0.5], "alpha": [0.0, 0.25, 0.5, 0.75]}


@register_strategy("macl")
class MACL(MACLBase):
    """lightly's `MACLLoss`: 2B anchors, each against its positive and the 2B − 2 other features of both views."""

    def anchor_logits(self, z1: Tensor, z2: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
        batch = z1.shape[0]
        self_col = torch.eye(2 * batch, dtype=torch.bool, device=z1.device)
        logits = (similarity_matrix(z1, z2) / tau).masked_fill(self_col, float("-inf"))
        return logits, positive_columns(batch, z1.device)


@register_strategy("macl", pairing="image_text")
class MACLImageText(MACLBase):
    """This project's adaptation to image–text pairs: A = mean_i S_ii; every image anchor against the B texts and
    every text anchor against the B images, L = ½[mean_i −V^I_i log P^I_i + mean_i −V^T_i log P^T_i]."""

    def anchor_logits(self, z1: Tensor, z2: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
        sim = similarity(z1, z2)
        diagonal = torch.arange(sim.shape[0], device=sim.device)
        return torch.cat([sim, sim.T]) / tau, torch.cat([diagonal, diagonal])
