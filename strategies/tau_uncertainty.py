"""`tau_uncertainty`: Temperature as Uncertainty (TaU; Zhang, Wu, Bayrooti, Goodman, arXiv 2110.04403): each input's
τ is predicted by one extra projector output. Views: the authors' `TaU_SimCLR` loss. image_text: this project's
adaptation (the authors' CLIP experiments are post hoc and image-only)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .base import Clock, StepOut, Strategy, set_rows
from .bimodal_losses import positive_mask, similarity
from .losses import non_negative_mask, positive_columns, similarity_matrix
from .registry import register_strategy
from .spec import check_choice, check_range, frozen, log_uniform

POSITIVE_KAPPA = ("anchor", "view1")


@dataclass(frozen=True)
class TaUConfig:
    """`tau_uncertainty` (views): the smallest τ t, the ε of the log term, and whose κ the positive uses."""

    tau: float = 0.1  # t, the smallest τ: τ_eff = t / σ(r) ∈ (t, ∞) (the authors' config; their constructor: 0.07)
    eps: float = 1e-6  # added to the sum over negatives, as the authors do
    positive_kappa: str = "anchor"  # the positive's κ: each anchor's own, or "view1" for both (the authors' code)

    def __post_init__(self) -> None:
        check_range("tau", self.tau, 0.0, None, low_open=True)
        check_range("eps", self.eps, 0.0, None, low_open=True)
        check_choice("positive_kappa", self.positive_kappa, POSITIVE_KAPPA)


@dataclass(frozen=True)
class TaUImageTextConfig:
    """`tau_uncertainty` (image_text): t at CLIP's scale and ε."""

    tau: float = 0.01  # t: CLIP-scale, like `fixed` (image_text)
    eps: float = 1e-6

    def __post_init__(self) -> None:
        check_range("tau", self.tau, 0.0, None, low_open=True)
        check_range("eps", self.eps, 0.0, None, low_open=True)


def uncertainty_nll(sim: Tensor, kappa: Tensor, positive_kappa: Tensor, positive: Tensor, not_negative: Tensor,
                    eps: float) -> Tensor:
    """mean_r [−κ⁺_r s_r,pos + log(Σ_{c negative} exp(κ_r s_rc) + ε)] over anchor rows; the positive is not in the
    denominator. sim: (R, C); kappa, positive_kappa: (R,); positive: (R,) columns; not_negative: (R, C) bool."""
    logits = (kappa[:, None] * sim).masked_fill(not_negative, float("-inf"))
    log_sum = torch.logsumexp(logits, dim=1)
    log_denominator = torch.logaddexp(log_sum, torch.full_like(log_sum, math.log(eps)))
    return (log_denominator - positive_kappa * sim.gather(1, positive[:, None])[:, 0]).mean()


class TaUBase(Strategy):
    """κ = σ(r)/t scales every logit of an anchor, r its input's extra projector output; τ_eff = 1/κ is learned
    through the loss by the encoder, so the strategy has no parameters. Buffer `last_tau`: the τ_eff each sample had
    when last seen (t/σ(0) = 2t before), which `temperatures()` reports."""

    extra_outputs = 1  # r, the logit of σ(r) = t/τ_eff
    per_sample_state = True
    per_sample_tau = True
    tau_hyperparameters = ("tau",)
    tau_buffer = "last_tau"
    space = frozen(tau=log_uniform(0.02, 0.5))
    grid = frozen(tau=(0.05, 0.07, 0.1, 0.2, 0.3))

    def __init__(self, num_samples: int, config: Any) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("last_tau", torch.full(self.tau_shape(num_samples), 2.0 * config.tau))

    def kappa(self, raw: Tensor) -> Tensor:
        """(R,) κ = σ(r)/t of (R, 1) extra outputs r."""
        return torch.sigmoid(raw[:, 0]) / self.config.tau

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """Record the τ_eff each sample of the batch had."""
        set_rows(self.last_tau, idx, out.saved["tau"].to(self.last_tau.dtype))

    def tau_bounds(self) -> tuple[float, float]:
        """(t, ∞): τ_eff = t/σ(r) tends to t as r → ∞ and grows without bound as r → −∞."""
        return (self.config.tau, math.inf)

    def step_out(self, loss: Tensor, tau: Tensor, kappa: Tensor) -> StepOut:
        """The StepOut of a step with per-anchor κ (R,) and the τ_eff it reports, `tau_shape(B)`."""
        return StepOut(loss=loss, tau=tau, logs={"tau_mean": tau.mean(), "tau_median": tau.median(),
                                                 "kappa_mean": kappa.detach().mean()}, saved={"tau": tau})


@register_strategy("tau_uncertainty")
class TaU(TaUBase):
    """The authors' loss over 2B anchors: ℓ_a = −κ⁺_a s⁺_a + log(Σ_{2B−2 negatives} exp(κ_a s_ac) + ε), self and
    positive excluded from the sum. κ⁺_a = κ_a by default; `positive_kappa="view1"` gives their code's view-1 κ
    for both anchors of a sample. `StepOut.tau` and `temperatures()` hold the view-1 τ_eff."""

    Config = TaUConfig

    def compute_raw(self, a: Tensor, b: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """Split each (B, d + 1) input into features and r, then the authors' loss over the 2B anchors."""
        (z1, r1), (z2, r2) = self.split_outputs(a), self.split_outputs(b)
        batch = z1.shape[0]
        kappa = self.kappa(torch.cat([r1, r2]))
        positive_kappa = kappa if self.config.positive_kappa == "anchor" else kappa[:batch].repeat(2)
        loss = uncertainty_nll(similarity_matrix(z1, z2), kappa, positive_kappa, positive_columns(batch, z1.device),
                               non_negative_mask(batch, z1.device), self.config.eps)
        return self.step_out(loss, (1.0 / kappa[:batch]).detach(), kappa)


@register_strategy("tau_uncertainty", pairing="image_text")
class TaUImageText(TaUBase):
    """This project's adaptation to image–text pairs: image anchor i has κ^I_i from its image's extra output, text
    anchor i κ^T_i from its caption's; ℓ^I_i = −κ^I_i S_ii + log(Σ_{j≠i} exp(κ^I_i S_ij) + ε), ℓ^T_i likewise over
    column i, L = ½(mean ℓ^I + mean ℓ^T). `StepOut.tau` and `temperatures()` are (·, 2): [image τ_eff, text τ_eff]."""

    Config = TaUImageTextConfig
    space = frozen(tau=log_uniform(0.003, 0.1))  # CLIP's scale, like `fixed` (image_text)
    grid = frozen(tau=(0.005, 0.01, 0.02, 0.05, 0.07))

    def compute_raw(self, a: Tensor, b: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """Split image and text (B, d + 1) into features and r, then the loss over B image and B text anchors."""
        (z_img, r_img), (z_txt, r_txt) = self.split_outputs(a), self.split_outputs(b)
        batch = z_img.shape[0]
        kappa = self.kappa(torch.cat([r_img, r_txt]))
        sim = similarity(z_img, z_txt)
        diagonal = torch.arange(batch, device=sim.device)
        not_negative = positive_mask(batch, sim.device).repeat(2, 1)
        loss = uncertainty_nll(torch.cat([sim, sim.T]), kappa, kappa, torch.cat([diagonal, diagonal]), not_negative,
                               self.config.eps)
        tau = (1.0 / kappa).detach().view(2, batch).T
        return self.step_out(loss, tau, kappa)
