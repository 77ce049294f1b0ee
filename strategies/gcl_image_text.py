"""`ImageTextGCL`: what the image–text strategies built on the global contrastive loss share (`sogclr`, `isogclr`
and `rgclg` with pairing "image_text"): the moving averages log u of both sides, the γ schedule and the first-visit
rule (README.md, `sogclr` (image_text)); and the top of a searched ρ, just below log(B − 1) (`rho_ceiling`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .base import Clock, StepOut, Strategy, rows_of, set_rows
from .bimodal_losses import GAMMA_SCHEDULES, BimodalGCLStep, gamma_at, gcl_step, similarity
from .losses import FIRST_VISIT_RULES
from .spec import Range, check_choice, check_range

ASSUMED_BATCH = 512  # the global batch a ρ range assumes when the run's is unknown: the iSogCLR authors' (2 × 256)
RHO_MARGIN = 0.1  # nats from a ρ range's top to log(B − 1): the iSogCLR authors ran 0.24 below, FastCLIP-v2 0.07 above


def rho_ceiling(batch_size: int | None) -> float:
    """The top of a searched ρ range, log(B − 1) − `RHO_MARGIN`, B the run's global batch (`ASSUMED_BATCH` when None):
    a softmax over B − 1 negatives is at most log(B − 1) from uniform in KL, so a ρ at or above it walks every τ to
    τ_min (README.md, `isogclr` (image_text)). 6.14 at B = 512, 4.74 at 128."""
    batch = ASSUMED_BATCH if batch_size is None else batch_size
    if batch < 3:
        raise ValueError(f"batch_size must be >= 3 to search rho below log(batch_size - 1), got {batch_size}")
    return math.log(batch - 1) - RHO_MARGIN


def suggest_below_rho_ceiling(trial: Any, space: Mapping[str, Range], batch_size: int | None) -> dict[str, Any]:
    """`space` suggested by `trial` as `StrategySpec.search_space` does, but with ρ's range ending at
    `rho_ceiling(batch_size)` (and starting at most halfway up to it, for small batches)."""
    top = rho_ceiling(batch_size)
    ranges = {name: Range(min(r.low, top / 2), top, r.log) if name == "rho" else r for name, r in space.items()}
    return {name: trial.suggest_float(name, r.low, r.high, log=r.log) for name, r in ranges.items()}


def check_moving_average(config: Any) -> None:
    """Validate the estimator fields every image–text GCL config has: gamma, gamma_schedule, gamma_decay_epochs,
    first_visit."""
    check_range("gamma", config.gamma, 0.0, 1.0, low_open=True)
    check_choice("gamma_schedule", config.gamma_schedule, GAMMA_SCHEDULES)
    if config.gamma_decay_epochs is not None:
        check_range("gamma_decay_epochs", config.gamma_decay_epochs, 0.0, None, low_open=True)
    check_choice("first_visit", config.first_visit, FIRST_VISIT_RULES)


class ImageTextGCL(Strategy):
    """Base of the image–text GCL strategies. Buffer `log_u` (N, 2): log u of each pair's image anchor (column 0)
    and text anchor (column 1), −inf = never visited; with idx (B, 2) column 0 is per image instead (`rows_of`).
    Subclasses pick each anchor's τ and call `gcl`."""

    per_sample_state = True

    def __init__(self, num_samples: int, config: Any) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("log_u", torch.full((num_samples, 2), float("-inf")))

    def gamma(self, clock: Clock) -> float:
        """γ_e of this step's epoch under the configured schedule."""
        c = self.config
        return gamma_at(c.gamma, c.gamma_schedule, c.gamma_decay_epochs, clock)

    def gcl(self, z_img: Tensor, z_txt: Tensor, idx: Tensor, clock: Clock, tau: Tensor,
            include_positive: bool = False) -> BimodalGCLStep:
        """The estimator step at per-anchor temperatures `tau` (B, 2), from the stored log u of the batch's anchors."""
        return gcl_step(similarity(z_img, z_txt), tau, rows_of(self.log_u, idx).to(z_img.dtype), self.gamma(clock),
                        self.config.first_visit, include_positive)

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """Write the fresh log u of both sides of the batch's anchors."""
        set_rows(self.log_u, idx, out.saved["log_u"].to(self.log_u.dtype))
