"""`dystress`: a temperature per pair, set by the pair's own cosine similarity (Manna, Chattopadhyay, Dey, Bhattacharya,
Pal, "DySTreSS: Dynamically Scaled Temperature in Self-Supervised Contrastive Learning", IEEE TAI 2025, arXiv
2308.01140). Views: the authors' `TSNTXentLoss` (sadimanna/DySTreSS, `imagenet/ts_ntx_ent_loss.py`). image_text:
this project's adaptation (no reference implements it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Clock, StepOut, Strategy, set_rows
from .bimodal_losses import similarity
from .losses import positive_columns, similarity_matrix
from .registry import register_strategy
from .spec import check_range, frozen, log_uniform


@dataclass(frozen=True)
class DySTreSSConfig:
    """The authors' ImageNet values (`TSNTXentLoss` defaults, `tssimclr.py`). Their CIFAR script's defaults (0.07,
    0.2) come with `--func expo`, which no branch matches, so that run trains at the constant τ_max."""

    tau_min: float = 0.1  # τ of an orthogonal pair (s = 0)
    tau_max: float = 0.2  # τ of an aligned or opposite pair (s = ±1); τ_min = τ_max is a constant τ

    def __post_init__(self) -> None:
        check_range("tau_min", self.tau_min, 0.0, None, low_open=True)
        check_range("tau_max", self.tau_max, self.tau_min, None)


@dataclass(frozen=True)
class DySTreSSImageTextConfig(DySTreSSConfig):
    """Ours: the ImageNet pair scaled by 1/10 to CLIP's scale, as `tau_uncertainty` does; no reference exists at
    this scale, so sweep it."""

    tau_min: float = 0.01
    tau_max: float = 0.02


def pair_temperature(sim: Tensor, tau_min: float, tau_max: float) -> Tensor:
    """τ(s) = τ_min + ½(τ_max − τ_min)(1 + cos(π(1 + s))), elementwise: τ_min at s = 0, τ_max at s = ±1. Written as
    the authors' `get_temp` writes it, so float rounding matches theirs. `sim` must be detached by the caller."""
    return tau_min + 0.5 * (tau_max - tau_min) * (1.0 + torch.cos((1.0 + sim) * math.pi))


@register_strategy("dystress")
class DySTreSS(Strategy):
    """DySTreSS (Manna et al., IEEE TAI 2025): NT-Xent with a τ per pair set by its cosine (authors' TSNTXentLoss).

    Over the 2B anchors, ℓ_r = −log(exp(s⁺_r/τ(s⁺_r)) / Σ_{c≠r} exp(s_rc/τ(s_rc))), the positive in the
    denominator, L = mean_r ℓ_r; τ(·) takes the *detached* similarity.

    Buffer `last_tau` (N,): for each sample, the mean τ over the 2B − 1 pairs of its view-1 anchor (row i of S without
    the diagonal, the positive included) in the last batch that held it; τ(0) = τ_min before its first visit (the τ
    of an orthogonal pair, what near-orthogonal features at initialisation get). `StepOut.tau` is the same (B,) mean.
    """

    Config = DySTreSSConfig
    per_sample_state = True  # last_tau
    per_sample_tau = True
    tau_hyperparameters = ("tau_min", "tau_max")
    tau_buffer = "last_tau"
    # disjoint ranges, so every suggestion has τ_min <= τ_max
    space = frozen(tau_min=log_uniform(0.03, 0.15), tau_max=log_uniform(0.15, 0.5))
    grid = frozen(tau_min=(0.05, 0.07, 0.1, 0.15, 0.2), tau_max=(0.1, 0.15, 0.2, 0.3, 0.5))

    def __init__(self, num_samples: int, config: DySTreSSConfig) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("last_tau", torch.full(self.tau_shape(num_samples), config.tau_min))

    def temperature(self, sim: Tensor) -> Tensor:
        """τ(s) of every entry of `sim`, without gradient: a gradient through τ would be a different method."""
        return pair_temperature(sim.detach(), self.config.tau_min, self.config.tau_max)

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """(2B, 2B) S, each logit divided by its own τ(s), cross-entropy at the positive column."""
        batch = z1.shape[0]
        sim = similarity_matrix(z1, z2)
        tau = self.temperature(sim)
        self_col = torch.eye(2 * batch, dtype=torch.bool, device=z1.device)
        logits = (sim / tau).masked_fill(self_col, float("-inf"))
        loss = F.cross_entropy(logits, positive_columns(batch, z1.device))
        mean_tau = tau[:batch].masked_fill(self_col[:batch], 0.0).sum(dim=1) / (2 * batch - 1)  # view-1 anchors
        positive_tau = tau.diagonal(offset=batch)  # τ(s⁺_i), the same for both anchors of i: S is symmetric
        return self.step_out(loss, mean_tau, positive_tau)

    def step_out(self, loss: Tensor, mean_tau: Tensor, positive_tau: Tensor) -> StepOut:
        """The StepOut of a step: `mean_tau` `tau_shape(B)` is reported and saved, τ(s⁺) (B,) logged."""
        logs = {"tau_mean": mean_tau.mean(), "tau_positive_mean": positive_tau.mean(),
                "tau_positive_min": positive_tau.min(), "tau_positive_max": positive_tau.max()}
        return StepOut(loss=loss, tau=mean_tau, logs=logs, saved={"tau": mean_tau})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """Record each sample's mean τ of this batch."""
        set_rows(self.last_tau, idx, out.saved["tau"].to(self.last_tau.dtype))


@register_strategy("dystress", pairing="image_text")
class DySTreSSImageText(DySTreSS):
    """DySTreSS (Manna et al., IEEE TAI 2025) on image–text pairs (ours): CLIP's cross-entropy, a τ per pair.

    ℓ_ij = S_ij/τ(S_ij) with τ from the detached S, then CLIP's symmetric cross-entropy (B image anchors over the
    rows, B text anchors over the columns, the positives in the denominators).

    Buffer `last_tau` (N, 2): for each pair, [mean τ over its image anchor's B candidates (row i of S), mean τ over
    its text anchor's B candidates (column i)] in the last batch that held it; τ_min before its first visit."""

    Config = DySTreSSImageTextConfig
    space = frozen(tau_min=log_uniform(0.003, 0.015), tau_max=log_uniform(0.015, 0.05))  # CLIP's scale
    grid = frozen(tau_min=(0.005, 0.007, 0.01, 0.015, 0.02), tau_max=(0.01, 0.015, 0.02, 0.03, 0.05))

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """(B, B) S, each logit divided by its own τ(S_ij), CLIP's cross-entropy over rows and columns."""
        sim = similarity(z1, z2)
        tau = self.temperature(sim)
        logits = sim / tau
        labels = torch.arange(sim.shape[0], device=sim.device)
        loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        mean_tau = torch.stack([tau.mean(dim=1), tau.mean(dim=0)], dim=1)
        return self.step_out(loss, mean_tau, tau.diagonal())
