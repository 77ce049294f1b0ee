"""References for `siglip`, `dcl`/`dclw` and `tau_free` (/work/shared/docs/new-strategies.md, §1, §2, §5).

Two kinds, both float64:
- loop references written from the papers' equations, one anchor and one candidate at a time, with plain exp/log
  (no logsigmoid, logsumexp or masks), so they check the vectorised code independently;
- re-implementations of the reference code's exact arithmetic, single process: open_clip's `SigLipLoss` (3.3.0,
  `src/open_clip/loss.py`) with its model's normalisation, t = exp(t′) and clamp, and lightly's `DCLLoss` /
  `DCLWLoss` (`lightly/loss/dcl_loss.py`, >= 1.5.21; `separate_logsumexp=True` gives the form of lightly <= 1.5.20,
  log Σ_same-view + log Σ_other-view, fixed in lightly PR #1827).
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from tests.strategies.reference import anchors, normalise

# new-strategies.md, "Shared test input" (raw; the strategies normalise it), B = 3, d = 3
SHARED_A = [[1, 0.2, -0.3], [0.1, 1, 0.4], [-0.5, 0.3, 1]]
SHARED_B = [[0.9, -0.1, 0.2], [0.3, 0.8, -0.2], [-0.2, 0.5, 0.9]]


def shared_input(dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """The spec's worked-example input (a, b), each (3, 3)."""
    return torch.tensor(SHARED_A, dtype=dtype), torch.tensor(SHARED_B, dtype=dtype)


def softplus(x: Tensor) -> Tensor:
    """log(1 + e^x), plainly (float64: exp stays finite for the |x| <= 200 used here); log1p keeps the digits of
    the ~1e-16 terms of well-separated pairs, which log(1 + ·) would round away."""
    return torch.log1p(torch.exp(x))


# ---- loop references from the equations --------------------------------------------------------------------------
def siglip_views(a: Tensor, b: Tensor, t: Tensor | float, bias: Tensor | float) -> Tensor:
    """(1/2B) Σ_r Σ_{c ≠ r} softplus(−y_rc (t s_rc + b)): y = +1 for the other view of the anchor's sample, −1 for
    the 2B − 2 other features (both views)."""
    z = torch.cat([normalise(a), normalise(b)])
    n, batch = z.shape[0], a.shape[0]
    total = 0.0
    for r in range(n):
        for c in range(n):
            if c == r:
                continue
            y = 1.0 if c == (r + batch) % n else -1.0
            total = total + softplus(-y * (t * (z[r] @ z[c]) + bias))
    return total / n


def siglip_image_text(a: Tensor, b: Tensor, t: Tensor | float, bias: Tensor | float) -> Tensor:
    """(1/B) Σ_i Σ_j softplus(−y_ij (t S_ij + b)), y_ii = +1 and y_ij = −1 for j ≠ i."""
    zi, zt = normalise(a), normalise(b)
    batch = a.shape[0]
    total = 0.0
    for i in range(batch):
        for j in range(batch):
            y = 1.0 if i == j else -1.0
            total = total + softplus(-y * (t * (zi[i] @ zt[j]) + bias))
    return total / batch


def vmf_weights(positives: list[Tensor], sigma: float) -> list[float]:
    """w_i = 2 − B e^{s⁺_i/σ} / Σ_j e^{s⁺_j/σ}, as plain numbers (no gradient flows through them)."""
    expo = [math.exp(p.item() / sigma) for p in positives]
    return [2.0 - len(expo) * e / sum(expo) for e in expo]


def dcl_views(a: Tensor, b: Tensor, tau: float, sigma: float | None = None) -> Tensor:
    """(1/2B) Σ_r [−w_i s⁺_r/τ + log Σ_{k ∈ neg(r)} exp(s_rk/τ)], w ≡ 1 (DCL) or the vMF weights of sample i (DCLW)."""
    rows = anchors(a, b)
    batch = a.shape[0]
    w = [1.0] * batch if sigma is None else vmf_weights([pos for _, pos, _, _ in rows[:batch]], sigma)
    total = 0.0
    for i, pos, _, negs in rows:
        total = total - w[i] * pos / tau + torch.log(sum(torch.exp(n / tau) for n in negs))
    return total / len(rows)


def dcl_image_text(a: Tensor, b: Tensor, tau: float, sigma: float | None = None) -> Tensor:
    """½[(1/B) Σ_i (−w_i S_ii/τ + log Σ_{j≠i} e^{S_ij/τ}) + (1/B) Σ_i (−w_i S_ii/τ + log Σ_{j≠i} e^{S_ji/τ})]."""
    zi, zt = normalise(a), normalise(b)
    batch = a.shape[0]
    sim = [[zi[i] @ zt[j] for j in range(batch)] for i in range(batch)]
    w = [1.0] * batch if sigma is None else vmf_weights([sim[i][i] for i in range(batch)], sigma)
    image_side = text_side = 0.0
    for i in range(batch):
        others = [j for j in range(batch) if j != i]
        image_side = image_side - w[i] * sim[i][i] / tau + torch.log(sum(torch.exp(sim[i][j] / tau) for j in others))
        text_side = text_side - w[i] * sim[i][i] / tau + torch.log(sum(torch.exp(sim[j][i] / tau) for j in others))
    return 0.5 * (image_side + text_side) / batch


def log_odds(s: Tensor, scale: float) -> Tensor:
    """(scale/2)·log((1 + s)/(1 − s)) = scale·atanh(s), written as the paper's log-odds of (1 + s)/2."""
    return 0.5 * scale * torch.log((1.0 + s) / (1.0 - s))


def tau_free_views(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """(1/2B) Σ_r −log(e^{f(s⁺_r)} / Σ_{c ≠ r} e^{f(s_rc)}), f(s) = scale·atanh(s); the positive is a candidate."""
    rows = anchors(a, b)
    total = 0.0
    for _, pos, cands, _ in rows:
        total = total - torch.log(torch.exp(log_odds(pos, scale)) / sum(torch.exp(log_odds(c, scale)) for c in cands))
    return total / len(rows)


def tau_free_image_text(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """½[mean_i −log softmax_j f(S_ij) at i + mean_i −log softmax_j f(S_ji) at i], f(s) = scale·atanh(s)."""
    zi, zt = normalise(a), normalise(b)
    batch = a.shape[0]
    f = [[log_odds(zi[i] @ zt[j], scale) for j in range(batch)] for i in range(batch)]
    total = 0.0
    for i in range(batch):
        total = total - torch.log(torch.exp(f[i][i]) / sum(torch.exp(f[i][j]) for j in range(batch)))
        total = total - torch.log(torch.exp(f[i][i]) / sum(torch.exp(f[j][i]) for j in range(batch)))
    return total / (2 * batch)


# ---- the reference code's arithmetic ------------------------------------------------------------------------------
class OpenCLIPSigLIP:
    """open_clip 3.3.0 as a SigLIP run uses it, single process: the model normalises both towers' features
    (`F.normalize(x, dim=-1)`) and returns `logit_scale.exp()` and `logit_bias`; `SigLipLoss._loss` computes
    `logits = logit_scale * image_features @ text_features.T`, `logits += logit_bias`, labels `2 * eye - ones` and
    `-F.logsigmoid(labels * logits).sum() / B`; after `optimizer.step()` the training loop clamps
    `logit_scale.clamp_(0, math.log(100))` (the bias is not clamped)."""

    def __init__(self, logit_scale: float, logit_bias: float) -> None:
        self.logit_scale = torch.tensor(logit_scale, dtype=torch.float64, requires_grad=True)
        self.logit_bias = torch.tensor(logit_bias, dtype=torch.float64, requires_grad=True)

    def loss(self, image: Tensor, text: Tensor) -> Tensor:
        image_features, text_features = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
        logits = self.logit_scale.exp() * image_features @ text_features.T
        logits += self.logit_bias
        num_logits = image_features.shape[0]
        labels = -torch.ones((num_logits, num_logits), dtype=image.dtype)
        labels = 2 * torch.eye(num_logits, dtype=image.dtype) + labels
        return -F.logsigmoid(labels * logits).sum() / image_features.shape[0]

    @torch.no_grad()
    def clamp(self) -> None:
        self.logit_scale.clamp_(0, math.log(100))


def negative_mises_fisher_weights(out0: Tensor, out1: Tensor, sigma: float = 0.5) -> Tensor:
    """lightly's weights, with `.detach()` where lightly wraps the result in `torch.tensor(...)` (a detached copy:
    the same numbers, without its UserWarning)."""
    similarity = torch.einsum("nm,nm->n", out0.detach(), out1.detach()) / sigma
    return (2 - out0.shape[0] * torch.nn.functional.softmax(similarity, dim=0)).detach()


class LightlyDCL:
    """lightly's `DCLLoss` (weight_fn None) / `DCLWLoss` (sigma given), gather_distributed False."""

    def __init__(self, temperature: float = 0.1, sigma: float | None = None, separate_logsumexp: bool = False) -> None:
        self.temperature = temperature
        self.weight_fn = None if sigma is None else partial(negative_mises_fisher_weights, sigma=sigma)
        self.separate_logsumexp = separate_logsumexp

    def __call__(self, out0: Tensor, out1: Tensor) -> Tensor:
        out0 = torch.nn.functional.normalize(out0, dim=1)
        out1 = torch.nn.functional.normalize(out1, dim=1)
        loss0 = self._loss(out0, out1, out0, out1)
        loss1 = self._loss(out1, out0, out1, out0)
        return 0.5 * (loss0 + loss1)

    def _loss(self, out0: Tensor, out1: Tensor, out0_all: Tensor, out1_all: Tensor) -> Tensor:
        batch_size = out0.shape[0]
        diag_mask = torch.eye(batch_size, device=out0.device, dtype=torch.bool)
        sim_00 = torch.einsum("nc,mc->nm", out0, out0_all) / self.temperature
        sim_01 = torch.einsum("nc,mc->nm", out0, out1_all) / self.temperature
        positive_loss = -sim_01[diag_mask]
        if self.weight_fn:
            positive_loss = positive_loss * self.weight_fn(out0, out1)
        sim_00 = sim_00[~diag_mask].view(batch_size, -1)
        sim_01 = sim_01[~diag_mask].view(batch_size, -1)
        if self.separate_logsumexp:  # lightly <= 1.5.20
            return (positive_loss + torch.logsumexp(sim_00, dim=1) + torch.logsumexp(sim_01, dim=1)).mean()
        all_negs = torch.cat([sim_00, sim_01], dim=1)
        negative_loss = torch.logsumexp(all_negs, dim=1)
        return (positive_loss + negative_loss).mean()
