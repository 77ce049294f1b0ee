"""Slow, loop-based references written straight from strategies/README.md (one anchor, one negative at a time).

They use plain exp/log (no log-domain tricks) in float64, so they check the vectorised log-domain code in
`tempbench.strategies` independently.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def normalise(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True)


def anchors(a: Tensor, b: Tensor) -> list[tuple[int, Tensor, Tensor, list[Tensor]]]:
    """For each of the 2B anchors: (sample i, positive similarity, candidates incl. positive, negatives)."""
    z1, z2 = normalise(a), normalise(b)
    batch = z1.shape[0]
    out = []
    for za, zb in [(z1, z2), (z2, z1)]:
        for i in range(batch):
            pos = za[i] @ zb[i]
            negs = [za[i] @ zb[j] for j in range(batch) if j != i] + [za[i] @ za[j] for j in range(batch) if j != i]
            out.append((i, pos, [pos, *negs], negs))
    return out


def nt_xent(a: Tensor, b: Tensor, tau: float | Tensor) -> Tensor:
    """L = (1/2B) Σ_a −log(exp(s⁺_a/τ) / Σ_c exp(s_ac/τ)), candidates include the positive."""
    total = 0.0
    rows = anchors(a, b)
    for _, pos, cands, _ in rows:
        total = total - torch.log(torch.exp(pos / tau) / sum(torch.exp(c / tau) for c in cands))
    return total / len(rows)


def decoupled(a: Tensor, b: Tensor, tau: float) -> Tensor:
    """Decoupled contrastive loss (positive not in the denominator); sum over views, mean over i, like SogCLR's L."""
    batch = a.shape[0]
    total = 0.0
    for _, pos, _, negs in anchors(a, b):
        total = total - torch.log(torch.exp(pos / tau) / sum(torch.exp(n / tau) for n in negs))
    return total / batch


def first_visit_gamma(sample: int, batch: list[int], u: dict[int, float], gamma: float, rule: str) -> float:
    """γ_i of one sample under the three first-visit rules (README.md, "First visit"), from their definitions."""
    if rule == "sample":
        return 1.0 if sample not in u else gamma
    if rule == "batch":
        return 1.0 if all(s not in u for s in batch) else gamma
    return gamma  # "none"


def sog_step(a: Tensor, b: Tensor, idx: list[int], u: dict[int, float], tau: dict[int, float], gamma: float,
             rho: float = 0.0, grad_clip: float | None = None,
             first_visit: str = "sample") -> tuple[Tensor, dict[int, float], dict[int, float]]:
    """One SogCLR/iSogCLR step (steps 1–6). u: sample -> u value (absent = never visited); tau: sample -> τ_i.

    Returns (surrogate loss, new u entries, τ-gradient G_i per sample).
    """
    batch = a.shape[0]
    k_neg = 2 * batch - 2
    rows = anchors(a, b)
    u_view: dict[tuple[int, int], Tensor] = {}
    for r, (i, _, _, negs) in enumerate(rows):
        view, sample = r // batch, idx[i]
        g = sum(torch.exp(n.detach() / tau[sample]) for n in negs) / k_neg
        gamma_i = first_visit_gamma(sample, idx, u, gamma, first_visit)
        u_view[(view, i)] = (1 - gamma_i) * u.get(sample, 0.0) + gamma_i * g
    loss = 0.0
    grads: dict[int, float] = {}
    for r, (i, pos, _, negs) in enumerate(rows):
        view, sample = r // batch, idx[i]
        u_i = u_view[(view, i)]
        p = [torch.exp(n.detach() / tau[sample]) / u_i for n in negs]  # detached weights
        loss = loss + (-pos + sum(pk * n for pk, n in zip(p, negs)) / k_neg)
        g_view = torch.log(u_i) + rho - sum(pk * n.detach() / tau[sample] for pk, n in zip(p, negs)) / k_neg
        grads[sample] = grads.get(sample, 0.0) + 0.5 * float(g_view)
    if grad_clip is not None:
        grads = {s: max(-grad_clip, min(grad_clip, g)) for s, g in grads.items()}
    new_u = {idx[i]: float((u_view[(0, i)] + u_view[(1, i)]) / 2) for i in range(batch)}
    return loss / batch, new_u, grads


def tau_momentum_step(tau: dict[int, float], m: dict[int, float], grads: dict[int, float], eta: float, beta: float,
                      tau_min: float, tau_max: float) -> None:
    """Step 7: m ← (1−β)m + βG; τ ← clamp(τ − η m, τ_min, τ_max), in place."""
    for s, g in grads.items():
        m[s] = (1 - beta) * m.get(s, 0.0) + beta * g
        tau[s] = min(tau_max, max(tau_min, tau[s] - eta * m[s]))


def robust_objective(h: list[float], tau: float, rho: float) -> float:
    """τ log mean_k exp(h_k/τ) + τρ for one anchor (the iSogCLR objective term, strategies/README.md)."""
    return tau * math.log(sum(math.exp(x / tau) for x in h) / len(h)) + tau * rho


def libauc_gcloss_v1_step(a: Tensor, b: Tensor, idx: list[int], state: dict[str, Tensor],
                          gamma: float, rho: float, eta: float, beta: float, tau_min: float, tau_max: float,
                          eps: float = 1e-8) -> Tensor:
    """One step of LibAUC 2.0.1 `GCLoss_v1(enable_isogclr=True)` as that library writes it: u starts at 0, the
    first-visit rule is batch-wide (`if u[index].sum() == 0`), weights divide by u.clamp(min=eps), and the τ update
    happens right after the loss. `state` holds tensors u, tau, grad_tau of shape (N,), updated in place.
    Returns the loss (same surrogate as `sog_step`)."""
    batch = a.shape[0]
    k_neg = 2 * batch - 2
    rows = anchors(a, b)
    fresh = float(state["u"][idx].sum()) == 0.0
    u_view = {}
    for r, (i, _, _, negs) in enumerate(rows):
        s = idx[i]
        g = sum(torch.exp(n.detach() / state["tau"][s]) for n in negs) / k_neg
        u_view[r] = g if fresh else (1 - gamma) * state["u"][s] + gamma * g
    loss, grads = 0.0, {}
    for r, (i, pos, _, negs) in enumerate(rows):
        s = idx[i]
        p = [torch.exp(n.detach() / state["tau"][s]) / max(float(u_view[r]), eps) for n in negs]
        loss = loss + (-pos + sum(pk * n for pk, n in zip(p, negs)) / k_neg)
        g_tau = math.log(float(u_view[r])) + rho - sum(float(pk * n.detach()) / float(state["tau"][s])
                                                      for pk, n in zip(p, negs)) / k_neg
        grads[s] = grads.get(s, 0.0) + 0.5 * g_tau
    for i in range(batch):
        state["u"][idx[i]] = (u_view[i] + u_view[batch + i]) / 2
    for s, g in grads.items():
        state["grad_tau"][s] = (1 - beta) * state["grad_tau"][s] + beta * g
        state["tau"][s] = (state["tau"][s] - eta * state["grad_tau"][s]).clamp(tau_min, tau_max)
    return loss / batch
