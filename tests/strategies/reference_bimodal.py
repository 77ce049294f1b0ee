"""Slow, loop-based references for the image–text strategies and for MACL and TaU, written straight from the
equations of strategies/README.md's image–text sections (one anchor, one negative at a time, plain exp/log,
float64).

Keys of per-anchor state are (side, sample): side 0 is the image anchor (row i of S), side 1 the text anchor
(column i); sample is the pair's dataset index, or under the image_caption indexing (an idx entry [image, caption])
the image's on side 0 and the caption's on side 1 (`state_key`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tests.strategies.reference import anchors, first_visit_gamma, normalise

Key = tuple[int, int]


def state_key(side: int, entry: int | tuple[int, int]) -> Key:
    """The state key of one anchor of an idx entry: (side, pair) for a pair index; (0, image) and (1, caption) for
    an [image, caption] entry."""
    return (side, entry if isinstance(entry, int) else entry[side])


def val(x: Tensor) -> float:
    """The value of a scalar tensor, detached (the weights p and V carry no gradient)."""
    return float(x.detach())


def sides(a: Tensor, b: Tensor) -> list[tuple[int, int, Tensor, list[Tensor], list[Tensor]]]:
    """For each side and anchor i: (side, i, S_ii, the negatives' similarities, their h = S − S_ii), j ≠ i."""
    zi, zt = normalise(a), normalise(b)
    batch = zi.shape[0]
    out = []
    for side in (0, 1):
        for i in range(batch):
            pos = zi[i] @ zt[i]
            negs = [zi[i] @ zt[j] if side == 0 else zi[j] @ zt[i] for j in range(batch) if j != i]
            out.append((side, i, pos, negs, [n - pos for n in negs]))
    return out


def clip(a: Tensor, b: Tensor, tau: float | Tensor) -> Tensor:
    """½[mean_i −log softmax_j(S_ij/τ)_i + mean_i −log softmax_j(S_ji/τ)_i], positive in the denominator."""
    rows = sides(a, b)
    total = 0.0
    for _, _, pos, negs, _ in rows:
        total = total - torch.log(torch.exp(pos / tau) / (torch.exp(pos / tau) + sum(torch.exp(n / tau) for n in negs)))
    return total / len(rows)


def decoupled(a: Tensor, b: Tensor, tau: float) -> Tensor:
    """DCL^I + DCL^T, DCL^X = mean_i[−S_ii/τ + log Σ_{j≠i} exp(S_ij/τ)] (columns for the text side)."""
    rows = sides(a, b)
    total = 0.0
    for _, _, pos, negs, _ in rows:
        total = total - pos / tau + torch.log(sum(torch.exp(n / tau) for n in negs))
    return total / (len(rows) // 2)


def gcl_step(a: Tensor, b: Tensor, idx: list[int] | list[tuple[int, int]], u: dict[Key, float],
             tau: dict[Key, float], gamma: float, rho: float = 0.0, grad_clip: float | None = None,
             first_visit: str = "sample",
             include_positive: bool = False) -> tuple[Tensor, dict[Key, float], dict[Key, float], dict[Key, float]]:
    """One bimodal GCL/RGCL step (sogclr steps 1–4, isogclr step 5). u: (side, sample) -> u (absent = never visited);
    idx: pair indices, or [image, caption] entries (`state_key`).

    Returns (surrogate L_3, fresh u per key, τ-gradient G per key, Ĥ per key)."""
    batch = len(idx)
    m = batch - 1
    loss = 0.0
    new_u: dict[Key, float] = {}
    grads: dict[Key, float] = {}
    h_hat: dict[Key, float] = {}
    for side, i, _, _, hs in sides(a, b):
        key = state_key(side, idx[i])
        t = tau[key]
        terms = [math.exp(val(h) / t) for h in hs] + ([1.0] if include_positive else [])  # the positive: h = 0
        g = sum(terms) / m
        gamma_i = first_visit_gamma(key, [state_key(side, s) for s in idx], u, gamma, first_visit)
        u_i = (1 - gamma_i) * u.get(key, 0.0) + gamma_i * g
        p = [math.exp(val(h) / t) / u_i for h in hs]  # detached weights
        loss = loss + sum(pk * h for pk, h in zip(p, hs)) / m
        h_hat[key] = sum(pk * val(h) for pk, h in zip(p, hs)) / m
        grad = math.log(u_i) + rho - h_hat[key] / t
        grads[key] = grad if grad_clip is None else max(-grad_clip, min(grad_clip, grad))
        new_u[key] = u_i
    return loss / batch, new_u, grads, h_hat


def rgclg_theta_grad(h_hat: dict[Key, float], new_u: dict[Key, float], tau: float, rho: float) -> float:
    """FastCLIP-v3's ∂/∂θ (rgclg): (1/B) Σ_i (Ĥ^I_i + Ĥ^T_i) − τ(ρ + M), M = (1/2B) Σ_i (log u^I_i + log u^T_i)."""
    batch = len(h_hat) // 2
    mean_log_u = sum(math.log(v) for v in new_u.values()) / (2 * batch)
    return sum(h_hat.values()) / batch - tau * (rho + mean_log_u)


def adam_step(state: dict[str, float], grad: float, lr: float, beta1: float, beta2: float, eps: float) -> float:
    """One Adam step on a scalar (no weight decay); `state` holds theta, m, v, t. Returns the new theta."""
    state["t"] += 1
    state["m"] = beta1 * state["m"] + (1 - beta1) * grad
    state["v"] = beta2 * state["v"] + (1 - beta2) * grad * grad
    m_hat = state["m"] / (1 - beta1 ** state["t"])
    v_hat = state["v"] / (1 - beta2 ** state["t"])
    state["theta"] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return state["theta"]


def macl_views(a: Tensor, b: Tensor, tau_0: float, alpha: float, a_0: float) -> Tensor:
    """lightly's MACL: A = mean positive cosine (detached), τ = τ_0(1 + α(A − A_0)), mean_a −V_a log P_a."""
    rows = anchors(a, b)
    align = sum(val(pos) for _, pos, _, _ in rows) / len(rows)
    t = tau_0 * (1 + alpha * (align - a_0))
    total = 0.0
    for _, pos, _, negs in rows:
        total = total + _reweighted_nll(pos, negs, t)
    return total / len(rows)


def _reweighted_nll(pos: Tensor, negs: list[Tensor], t: float) -> Tensor:
    """−V log P of one anchor, P = exp(s⁺/t) / (exp(s⁺/t) + Σ exp(s/t)), V = 1/(1 − P + 1e-8). With r = Σ exp((s −
    s⁺)/t): −log P = log(1 + r) and 1 − P = r/(1 + r), which keep their digits as P → 1 (1 − P and log P do not)."""
    r = sum(torch.exp((n - pos) / t) for n in negs)
    return torch.log1p(r) / (val(r / (1 + r)) + 1e-8)


def macl_image_text(a: Tensor, b: Tensor, tau_0: float, alpha: float, a_0: float) -> Tensor:
    """The bimodal MACL (macl): A = mean_i S_ii; ½[mean_i −V^I_i log P^I_i + mean_i −V^T_i log P^T_i]."""
    rows = sides(a, b)
    align = sum(val(pos) for _, _, pos, _, _ in rows) / len(rows)
    t = tau_0 * (1 + alpha * (align - a_0))
    total = 0.0
    for _, _, pos, negs, _ in rows:
        total = total + _reweighted_nll(pos, negs, t)
    return total / len(rows)


def tau_views(a: Tensor, b: Tensor, t: float, eps: float, positive_kappa: str = "anchor") -> Tensor:
    """TaU: the last column is r, κ = σ(r)/t; ℓ_a = −log(exp(κ⁺ s⁺)/(Σ_neg exp(κ_a s) + ε)), mean over 2B."""
    z = [normalise(a[:, :-1]), normalise(b[:, :-1])]
    kappa = [torch.sigmoid(a[:, -1]) / t, torch.sigmoid(b[:, -1]) / t]
    batch = a.shape[0]
    total = 0.0
    for view in (0, 1):
        za, zb = z[view], z[1 - view]
        for i in range(batch):
            k = kappa[view][i]
            k_pos = k if positive_kappa == "anchor" else kappa[0][i]
            negs = [za[i] @ zb[j] for j in range(batch) if j != i] + [za[i] @ za[j] for j in range(batch) if j != i]
            denominator = sum(torch.exp(k * n) for n in negs) + eps
            total = total - torch.log(torch.exp(k_pos * (za[i] @ zb[i])) / denominator)
    return total / (2 * batch)


def tau_image_text(a: Tensor, b: Tensor, t: float, eps: float) -> Tensor:
    """Bimodal TaU: κ^I from the image's extra output, κ^T from the caption's; ½(mean ℓ^I + mean ℓ^T)."""
    kappa = [torch.sigmoid(a[:, -1]) / t, torch.sigmoid(b[:, -1]) / t]
    rows = sides(a[:, :-1], b[:, :-1])
    total = 0.0
    for side, i, pos, negs, _ in rows:
        k = kappa[side][i]
        total = total - torch.log(torch.exp(k * pos) / (sum(torch.exp(k * n) for n in negs) + eps))
    return total / len(rows)
