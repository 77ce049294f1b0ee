"""Pure loss functions shared by several strategies (no state; tensors in, tensors out).

Layout (README.md, "Notation"): Z = [z1; z2] is (2B, d) of L2-normalised features and S = Z Zᵀ is (2B, 2B).
Row r is an anchor: rows 0..B-1 are view-1 anchors, rows B..2B-1 view-2 anchors. Anchor r's candidates are every
column but r itself (2B − 1 of them); its positive is column (r + B) mod 2B; its negatives are the other 2B − 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


def similarity_matrix(z1: Tensor, z2: Tensor) -> Tensor:
    """(2B, 2B) cosine similarities of all pairs of the 2B normalised features."""
    z = torch.cat([z1, z2], dim=0)
    return z @ z.T


@lru_cache(maxsize=16)
def _masks(batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
    n = 2 * batch
    rows = torch.arange(n, device=device)
    positive_col = (rows + batch) % n
    not_negative = torch.eye(n, dtype=torch.bool, device=device)
    not_negative[rows, positive_col] = True
    return positive_col, not_negative


def positive_columns(batch: int, device: torch.device) -> Tensor:
    """(2B,) the column of each anchor's positive in S."""
    return _masks(batch, torch.device(device))[0]


def non_negative_mask(batch: int, device: torch.device) -> Tensor:
    """(2B, 2B) bool, True where a column is not a negative of the row's anchor (itself or its positive)."""
    return _masks(batch, torch.device(device))[1]


def nt_xent(z1: Tensor, z2: Tensor, tau: Tensor | float) -> Tensor:
    """SimCLR NT-Xent (Chen et al., 2020): mean over 2B anchors of −log softmax of the positive among 2B − 1 candidates.

    z1, z2: (B, d) normalised. tau: a float, a scalar tensor (learnable τ) or (2B, 1) per-anchor temperatures.
    """
    batch = z1.shape[0]
    logits = similarity_matrix(z1, z2) / tau
    self_col = torch.eye(2 * batch, dtype=torch.bool, device=z1.device)
    logits = logits.masked_fill(self_col, float("-inf"))
    return F.cross_entropy(logits, positive_columns(batch, z1.device))


@dataclass
class GlobalContrastiveStep:
    """What one SogCLR-style step computes (all per-anchor rows are (2B,), per-sample ones (B,))."""

    loss: Tensor  # scalar surrogate whose gradient is the algorithm's weight gradient
    log_u_rows: Tensor  # (2B,) log u1_i (view-1 rows) then log u2_i (view-2 rows), detached
    new_log_u: Tensor  # (B,) log((u1 + u2) / 2), the state to write back, detached
    weighted_sim: Tensor  # (2B,) (1/(2B−2)) Σ_k p_rk s_rk, detached
    positive_sim: Tensor  # (B,) s⁺_i, detached


FIRST_VISIT_RULES = ("sample", "batch", "none")


def first_visit_gamma(log_u_old: Tensor, gamma: float, rule: str) -> Tensor:
    """(B,) the moving-average weight γ_i of each sample of a batch; log_u_old is −inf where never visited.

    "sample": γ_i = 1 for the samples never visited, γ for the rest (this project's default);
    "batch":  γ_i = 1 for all only when no sample of the batch was visited, else γ for all (LibAUC 2.0.1);
    "none":   γ always, so a new sample starts at u = γ·g (the iSogCLR authors' released code).
    """
    new = torch.isneginf(log_u_old)
    if rule == "sample":
        return torch.full_like(log_u_old, gamma).masked_fill_(new, 1.0)
    if rule == "batch":
        return torch.full_like(log_u_old, gamma).masked_fill_(new.all(), 1.0)  # no host sync: a 0-d mask
    if rule == "none":
        return torch.full_like(log_u_old, gamma)
    raise ValueError(f"unknown first_visit rule {rule!r}; valid: {', '.join(FIRST_VISIT_RULES)}")


def global_contrastive_step(z1: Tensor, z2: Tensor, tau_rows: Tensor, log_u_old: Tensor, gamma: float,
                            first_visit: str = "sample") -> GlobalContrastiveStep:
    """Steps 1–5 of SogCLR (Yuan et al., ICML 2022), with per-anchor temperatures (iSogCLR uses τ_i here).

    z1, z2: (B, d) normalised. tau_rows: (2B, 1) temperature of each anchor row. log_u_old: (B,) log u[idx],
    −inf for samples never visited (their γ_i follows `first_visit`, see `first_visit_gamma`). Everything runs in
    the log domain, so it stays finite for τ down to 0.005 where exp(1/τ) overflows float32.
    """
    batch = z1.shape[0]
    num_neg = 2 * batch - 2
    sim = similarity_matrix(z1, z2)
    with torch.no_grad():
        # logits over negatives only; masked entries become exp(−inf) = 0 weights below
        logits = (sim / tau_rows).masked_fill_(non_negative_mask(batch, sim.device), float("-inf"))
        log_g = torch.logsumexp(logits, dim=1) - math.log(num_neg)
        gamma_i = first_visit_gamma(log_u_old, gamma, first_visit)
        # γ_i = 1 gives log1p(-1) = −inf: the old u is dropped even where it is −inf itself (−inf + −inf = −inf)
        log_keep, log_new = torch.log1p(-gamma_i) + log_u_old, torch.log(gamma_i)
        log_u1 = torch.logaddexp(log_keep, log_new + log_g[:batch])
        log_u2 = torch.logaddexp(log_keep, log_new + log_g[batch:])
        log_u_rows = torch.cat([log_u1, log_u2])
        weights = logits.sub_(log_u_rows[:, None]).exp_()  # p_rk = exp(s_rk/τ_r) / u_r, detached
        new_log_u = torch.logaddexp(log_u1, log_u2) - math.log(2.0)
    weighted = (weights * sim).sum(dim=1) / num_neg
    positive = (z1 * z2).sum(dim=1)
    loss = (weighted.sum() - 2.0 * positive.sum()) / batch
    return GlobalContrastiveStep(loss, log_u_rows, new_log_u, weighted.detach(), positive.detach())


@torch.no_grad()
def momentum_tau_step(tau: Tensor, momentum: Tensor, grad: Tensor, eta: float, beta: float, tau_min: float,
                      tau_max: float) -> tuple[Tensor, Tensor]:
    """iSogCLR's τ update for the samples of a batch (any shape): m ← (1−β)·m + β·G, τ ← clamp(τ − η·m, τ_min,
    τ_max). Plain momentum SGD, with β on the new gradient (not Adam). Returns (new τ, new m)."""
    momentum = (1.0 - beta) * momentum + beta * grad.to(momentum.dtype)
    return (tau - eta * momentum).clamp(tau_min, tau_max), momentum
