"""`macl`: model-aware contrastive learning, τ set by the batch's alignment, with reweighted anchors (Huang, Yi, Zhao,
"Model-Aware Contrastive Learning: Towards Escaping the Dilemmas", ICML 2023, arXiv 2207.07874). Views: lightly's
`MACLLoss` exactly. image_text: this project's adaptation (no reference implements it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Clock, StepOut, Strategy
from .bimodal_losses import similarity
from .losses import positive_columns, similarity_matrix
from .registry import register_strategy
from .spec import check_range, frozen, log_uniform, uniform

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


def views_anchor_logits(z1: Tensor, z2: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
    """lightly's `MACLLoss` layout: 2B anchors, each against its positive and the 2B − 2 other features of both views.
    z1, z2: (B, d) normalised; tau: 0-d. Returns (logits (2B, 2B) with −inf on the diagonal, positive columns (2B,))."""
    batch = z1.shape[0]
    self_col = torch.eye(2 * batch, dtype=torch.bool, device=z1.device)
    logits = (similarity_matrix(z1, z2) / tau).masked_fill(self_col, float("-inf"))
    return logits, positive_columns(batch, z1.device)


def image_text_anchor_logits(z_img: Tensor, z_txt: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
    """This project's image–text layout: B image anchors against the B captions (rows of S), then B text anchors
    against the B images (columns of S). Returns (logits (2B, B), positive columns (2B,): the diagonal)."""
    sim = similarity(z_img, z_txt)
    diagonal = torch.arange(sim.shape[0], device=sim.device)
    return torch.cat([sim, sim.T]) / tau, torch.cat([diagonal, diagonal])


ANCHOR_LOGITS = {"views": views_anchor_logits, "image_text": image_text_anchor_logits}


@register_strategy("macl")
class MACL(Strategy):
    """lightly's `MACLLoss`: τ = τ_0 (1 + α (A − A_0)), A the batch's mean positive cosine, detached (τ gets no
    gradient), and `reweighted_nll` over the pairing's anchors (`ANCHOR_LOGITS`). Buffer `last_tau`: the τ of the
    last step (τ_0 before the first), which `temperatures()` reports for every sample."""

    Config = MACLConfig
    tau_hyperparameters = ("tau_0",)
    tau_buffer = "last_tau"
    space = frozen(tau_0=log_uniform(0.02, 0.5), alpha=uniform(0.0, 0.9))
    grid = frozen(tau_0=(0.05, 0.1, 0.2, 0.5), alpha=(0.0, 0.25, 0.5, 0.75))

    def __init__(self, num_samples: int, config: MACLConfig) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("last_tau", torch.tensor(config.tau_0))

    @classmethod
    def pinned_tau_hyperparameters(cls, tau: float) -> dict[str, Any]:
        """τ_0 = `tau` and α = 0, so τ = τ_0 whatever the alignment."""
        return {"tau_0": tau, "alpha": 0.0}

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """τ from this batch's alignment, then the reweighted loss; τ is logged and saved for `update`."""
        c = self.config
        alignment = (z1 * z2).sum(dim=1).mean().detach()  # the mean positive cosine, A
        tau = c.tau_0 * (1.0 + c.alpha * (alignment - c.a_0))
        logits, positive = ANCHOR_LOGITS[self.pairing](z1, z2, tau)
        loss = reweighted_nll(logits, positive)
        return StepOut(loss=loss, tau=tau.expand(self.tau_shape(z1.shape[0])),
                       logs={"tau": tau, "alignment": alignment}, saved={"tau": tau})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """Record the step's τ in `last_tau`."""
        self.last_tau.copy_(out.saved["tau"])

    def tau_bounds(self) -> tuple[float, float]:
        """τ at alignment A = −1 and A = 1 (A is a mean cosine)."""
        c = self.config
        return (c.tau_0 * (1.0 - c.alpha * (1.0 + c.a_0)), c.tau_0 * (1.0 + c.alpha * (1.0 - c.a_0)))


@register_strategy("macl", pairing="image_text")
class MACLImageText(MACL):
    """This project's adaptation to image–text pairs: A = mean_i S_ii; every image anchor against the B texts and
    every text anchor against the B images, L = ½[mean_i −V^I_i log P^I_i + mean_i −V^T_i log P^T_i]. Everything
    but the anchors (`image_text_anchor_logits`, picked by pairing) is the views class's."""
