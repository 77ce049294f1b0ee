"""References for `dystress` and `tempnet` (tests/strategies/test_dystress.py, test_tempnet.py).

Two kinds, both float64:
- loop references written from the papers' equations (one anchor, one candidate at a time, plain exp/log; the
  weights p and the temperatures τ of DySTreSS are Python floats, so they carry no gradient, as the methods say);
- re-implementations of the authors' code, arithmetic kept as theirs: DySTreSS `TSNTXentLoss` (sadimanna/DySTreSS,
  `imagenet/ts_ntx_ent_loss.py`: `get_temp` and its NT-Xent without a memory bank) and TempNet's `TempGenerator` and
  `iSogCLR_TempNet_Loss` (zhqiu/TempNet, `Bimodal_CL/models/losses.py`, on one process: no gather, no `.cuda()`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tests.strategies.reference import anchors, first_visit_gamma, normalise
from tests.strategies.reference_bimodal import sides, val


# ---- DySTreSS ---------------------------------------------------------------------------------------------------
def dystress_tau(s: float, tau_min: float, tau_max: float) -> float:
    """τ(s) = τ_min + ½(τ_max − τ_min)(1 − cos πs), the paper's cosine profile (a float: no gradient)."""
    return tau_min + 0.5 * (tau_max - tau_min) * (1.0 - math.cos(math.pi * s))


def dystress_loop(a: Tensor, b: Tensor, tau_min: float, tau_max: float,
                  pairing: str = "views") -> tuple[Tensor, list[float]]:
    """L = mean over anchors of −log(exp(s⁺/τ(s⁺)) / Σ_c exp(s_c/τ(s_c))), the positive among the candidates.
    Returns (L, each anchor's mean τ over its candidates, in the order of `anchors` or `sides`)."""
    if pairing == "views":  # (positive, candidates incl. the positive) of each anchor: view 1, then view 2
        rows = [(pos, cands) for _, pos, cands, _ in anchors(a, b)]
    else:  # image anchors (rows of S), then text anchors (columns)
        rows = [(pos, [pos, *negs]) for _, _, pos, negs, _ in sides(a, b)]
    total, mean_tau = 0.0, []
    for pos, cands in rows:
        taus = [dystress_tau(val(c), tau_min, tau_max) for c in cands]
        positive = torch.exp(pos / dystress_tau(val(pos), tau_min, tau_max))
        total = total - torch.log(positive / sum(torch.exp(c / t) for c, t in zip(cands, taus)))
        mean_tau.append(sum(taus) / len(taus))
    return total / len(rows), mean_tau


class DySTreSSAuthors:
    """`TSNTXentLoss.forward` with `memory_bank_size=0` on one process, arithmetic as theirs."""

    def __init__(self, min_temp: float = 0.1, max_temp: float = 0.2, pi_dtype: torch.dtype = torch.float32) -> None:
        self.min_temp, self.max_temp, self.pi_dtype = min_temp, max_temp, pi_dtype

    def get_temp(self, cossim: Tensor) -> Tensor:
        # torch.tensor(np.pi) in theirs: a float32 π (3.1415927...), whatever cossim's dtype; `pi_dtype` float64
        # shows that this is the only difference from ours in float64
        return self.min_temp + 0.5 * (self.max_temp - self.min_temp) * (1 + torch.cos((1 + cossim) * torch.tensor(
            math.pi, dtype=self.pi_dtype)))

    def __call__(self, out0: Tensor, out1: Tensor) -> Tensor:
        batch_size = out0.shape[0]
        out0 = nn.functional.normalize(out0, dim=1)
        out1 = nn.functional.normalize(out1, dim=1)
        diag_mask = torch.eye(batch_size, device=out0.device, dtype=torch.bool)
        logits_00 = torch.einsum("nc,mc->nm", out0, out0)
        logits_01 = torch.einsum("nc,mc->nm", out0, out1)
        logits_10 = torch.einsum("nc,mc->nm", out1, out0)
        logits_11 = torch.einsum("nc,mc->nm", out1, out1)
        logits_00 = logits_00[~diag_mask].view(batch_size, -1)
        logits_11 = logits_11[~diag_mask].view(batch_size, -1)
        logits = torch.cat([torch.cat([logits_01, logits_00], dim=1), torch.cat([logits_10, logits_11], dim=1)], dim=0)
        logits = logits / self.get_temp(logits.detach())
        labels = torch.arange(batch_size, device=out0.device, dtype=torch.long).repeat(2)
        return nn.CrossEntropyLoss(reduction="mean")(logits, labels)


# ---- TempNet: loop references -----------------------------------------------------------------------------------
def temp_generator_loop(z: Tensor, weight: Tensor, bias: Tensor, log_scale: Tensor, prototypes: Tensor,
                        head_weight: Tensor, head_bias: Tensor, tau_min: float, tau_max: float) -> list[Tensor]:
    """τ of each row of z (no dropout), one hidden unit and one prototype at a time:
    x_j = σ(Σ_k W_jk z_k + c_j), q_m = Σ_j x_j P_mj/‖P_m‖, w_m = exp(q_m/e^κ)/Σ_n exp(q_n/e^κ),
    o = Σ_m v_m (w_m − 1/M) σ(q_m) + v_0, τ = τ_min + (τ_max − τ_min)/(1 + e^{−o})."""
    sig = torch.sigmoid
    num_protos, out = prototypes.shape[0], []
    for row in z:
        x = [sig(sum(weight[j, k] * row[k] for k in range(len(row))) + bias[j]) for j in range(weight.shape[0])]
        q = [sum(x[j] * prototypes[m, j] for j in range(len(x))) / prototypes[m].norm() for m in range(num_protos)]
        e = [torch.exp(qm / torch.exp(log_scale)) for qm in q]
        o = sum(head_weight[0, m] * (e[m] / sum(e) - 1.0 / num_protos) * sig(q[m]) for m in range(num_protos))
        out.append(tau_min + (tau_max - tau_min) / (1.0 + torch.exp(-(o + head_bias[0]))))
    return out


def tempnet_image_text_loop(a: Tensor, b: Tensor, idx: list[int], u: dict, tau: Tensor, gamma: float, rho: float,
                            first_visit: str = "sample") -> tuple[Tensor, Tensor, dict, dict]:
    """One step of the authors' objective at per-anchor τ (B, 2) (a tensor: temp_loss is differentiated in it).
    For side X and anchor i (h from `sides`): g = (1/m) Σ_j exp(h_j/τ), u = (1 − γ_i) u_old + γ_i g,
    p_j = exp(h_j/τ)/u (detached), clip_loss += (1/B)(1/m) Σ_j p_j h_j, G = log u + ρ − (1/m) Σ_j p_j h_j/τ,
    temp_loss += G τ / B. u: (side, sample) -> u. Returns (clip_loss, temp_loss, fresh u, G)."""
    batch = len(idx)
    m = batch - 1
    clip, temp, new_u, grads = 0.0, 0.0, {}, {}
    for side, i, _, _, hs in sides(a, b):
        key, t = (side, idx[i]), val(tau[i, side])
        g = sum(math.exp(val(h) / t) for h in hs) / m
        gamma_i = first_visit_gamma(key, [(side, s) for s in idx], u, gamma, first_visit)
        u_i = (1 - gamma_i) * u.get(key, 0.0) + gamma_i * g
        p = [math.exp(val(h) / t) / u_i for h in hs]
        clip = clip + sum(pj * h for pj, h in zip(p, hs)) / (m * batch)
        grads[key] = math.log(u_i) + rho - sum(pj * val(h) for pj, h in zip(p, hs)) / (m * t)
        temp = temp + grads[key] * tau[i, side] / batch
        new_u[key] = u_i
    return clip, temp, new_u, grads


def tempnet_views_loop(a: Tensor, b: Tensor, idx: list[int], u: dict, tau: Tensor, gamma: float, rho: float,
                       first_visit: str = "sample") -> tuple[Tensor, Tensor, dict, list[float]]:
    """One step of `tempnet` (views) at per-anchor-row τ (2B,): for anchor row r of sample i, g_r = (1/K) Σ_k
    exp(s_rk/τ_r), u_r = (1 − γ_i) u[i] + γ_i g_r, p_rk = exp(s_rk/τ_r)/u_r (detached); surrogate (1/B) Σ_r
    (−s⁺_r + (1/K) Σ_k p_rk s_rk); G_r = log u_r + ρ − (1/K) Σ_k p_rk s_rk/τ_r; temp_loss = (1/B) Σ_r G_r τ_r;
    u[i] ← (u_1 + u_2)/2. Returns (surrogate, temp_loss, fresh u, G per row)."""
    batch = len(idx)
    k_neg = 2 * batch - 2
    loss, temp, rows_u, grads = 0.0, 0.0, {}, []
    for r, (i, pos, _, negs) in enumerate(anchors(a, b)):
        t = val(tau[r])
        g = sum(math.exp(val(s) / t) for s in negs) / k_neg
        gamma_i = first_visit_gamma(idx[i], idx, u, gamma, first_visit)
        u_r = (1 - gamma_i) * u.get(idx[i], 0.0) + gamma_i * g
        p = [math.exp(val(s) / t) / u_r for s in negs]
        loss = loss + (-pos + sum(pk * s for pk, s in zip(p, negs)) / k_neg) / batch
        grads.append(math.log(u_r) + rho - sum(pk * val(s) for pk, s in zip(p, negs)) / (k_neg * t))
        temp = temp + grads[-1] * tau[r] / batch
        rows_u.setdefault(idx[i], []).append(u_r)
    return loss, temp, {k: sum(v) / 2 for k, v in rows_u.items()}, grads


# ---- TempNet: the authors' code -------------------------------------------------------------------------------------
class TempGeneratorAuthors(nn.Module):
    """`TempGenerator.forward` (no `return_feats`), arithmetic as theirs; parameters copied from one of ours."""

    def __init__(self, ours: nn.Module, tau_min: float, tau_max: float) -> None:
        super().__init__()
        self.M, self.tau_min, self.tau_max = ours.prototypes.shape[0], tau_min, tau_max
        self.proj = nn.Linear(ours.weight.shape[1], ours.weight.shape[0]).double()
        self.proj.weight.data.copy_(ours.weight.data)
        self.proj.bias.data.copy_(ours.bias.data)
        self.scaler = nn.Parameter(ours.log_scale.data.clone())
        self.prototypes = nn.Parameter(ours.prototypes.data.clone())
        self.linear_1 = nn.Linear(self.M, 1).double()
        self.linear_1.weight.data.copy_(ours.head_weight.data)
        self.linear_1.bias.data.copy_(ours.head_bias.data)
        self.dropout = nn.Dropout(0.5)

    def _init_prototypes(self, feats: Tensor) -> None:
        self.prototypes.data.copy_(feats)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(torch.sigmoid(self.proj(x)))
        normed_protos = F.normalize(self.prototypes, p=2.0, dim=1)
        prods = x @ normed_protos.t()
        weights = nn.Softmax(dim=1)(prods / self.scaler.exp())
        sims = torch.sigmoid(prods)
        tau = self.linear_1((weights - 1.0 / self.M) * sims).squeeze()
        return (self.tau_max - self.tau_min) * torch.sigmoid(tau) + self.tau_min


class TempNetLossAuthors(nn.Module):
    """`iSogCLR_TempNet_Loss.forward`: u stored as s with a running max b >= 0, s = g in epoch 0, the 1e-14 clamp.
    Returns ((clip_loss, temp_loss), tau_image, tau_text)."""

    def __init__(self, n: int, gamma: float, rho: float, image_gen: nn.Module, text_gen: nn.Module) -> None:
        super().__init__()
        self.s_I, self.s_T = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        self.b_I, self.b_T = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        self.gamma, self.eps, self.rho = gamma, 1e-14, rho
        self.image_temp_gen, self.text_temp_gen = image_gen, text_gen

    def plain_u(self) -> tuple[Tensor, Tensor]:
        """u = s e^b / (B − 1) needs B; this returns s e^b per side (divide by B − 1)."""
        return self.s_I * self.b_I.exp(), self.s_T * self.b_T.exp()

    def forward(self, image_features: Tensor, text_features: Tensor, image_ids: Tensor, text_ids: Tensor,
                epoch: int) -> tuple[tuple[Tensor, Tensor], Tensor, Tensor]:
        sim = torch.einsum("i d, j d -> i j", image_features, text_features)
        diag_sim = torch.diagonal(sim)
        batch_size = sim.shape[0]
        mask_neg = (1.0 - torch.eye(batch_size, dtype=sim.dtype))
        tau_image = self.image_temp_gen(image_features.detach())
        tau_text = self.text_temp_gen(text_features.detach())
        image_diffs = sim - diag_sim[:, None]
        text_diffs = sim - diag_sim[None, :]
        image_diffs_d_temps = (image_diffs / tau_image[:, None]).detach()
        text_diffs_d_temps = (text_diffs / tau_text[None, :]).detach()
        old_b_I = self.b_I[image_ids]
        new_b_I = torch.max(image_diffs_d_temps, old_b_I[:, None].tile(1, batch_size))
        self.b_I[image_ids] = torch.max(new_b_I, dim=1)[0]
        old_b_T = self.b_T[text_ids]
        new_b_T = torch.max(text_diffs_d_temps, old_b_T[None, :].tile(batch_size, 1))
        self.b_T[text_ids] = torch.max(new_b_T, dim=0)[0]
        exp_image_diffs = torch.exp(image_diffs_d_temps - self.b_I[image_ids][:, None]) * mask_neg
        exp_text_diffs = torch.exp(text_diffs_d_temps - self.b_T[text_ids][None, :]) * mask_neg
        g_I = torch.sum(exp_image_diffs, dim=1, keepdim=True)
        g_T = torch.sum(exp_text_diffs, dim=0, keepdim=True)
        if epoch == 0:
            s_I, s_T = g_I, g_T
        else:
            s_I = (1.0 - self.gamma) * self.s_I[image_ids] * torch.exp(old_b_I - self.b_I[image_ids]) \
                + self.gamma * g_I.squeeze()
            s_T = (1.0 - self.gamma) * self.s_T[text_ids] * torch.exp(old_b_T - self.b_T[text_ids]) \
                + self.gamma * g_T.squeeze()
            s_I, s_T = s_I.reshape(g_I.shape), s_T.reshape(g_T.shape)
        self.s_I[image_ids] = s_I.squeeze()
        self.s_T[text_ids] = s_T.squeeze()
        s_I, s_T = s_I.clamp(min=self.eps), s_T.clamp(min=self.eps)
        weights_image = exp_image_diffs / s_I
        weights_text = exp_text_diffs / s_T
        image_loss = torch.sum(weights_image * image_diffs, dim=1, keepdim=True)
        text_loss = torch.sum(weights_text * text_diffs, dim=0, keepdim=True)
        clip_loss = image_loss.mean() + text_loss.mean()
        temp_weight_image = torch.log(s_I / (batch_size - 1)) + self.b_I[image_ids][:, None] + self.rho \
            - torch.sum(weights_image * image_diffs_d_temps, dim=1, keepdim=True)
        temp_weight_text = torch.log(s_T / (batch_size - 1)) + self.b_T[text_ids][None, :] + self.rho \
            - torch.sum(weights_text * text_diffs_d_temps, dim=0, keepdim=True)
        temp_image_loss = torch.mean(temp_weight_image * tau_image[:, None])
        temp_text_loss = torch.mean(temp_weight_text * tau_text[None, :])
        temp_loss = temp_image_loss + temp_text_loss
        return (clip_loss, temp_loss), tau_image.detach(), tau_text.detach()


__all__ = ["DySTreSSAuthors", "TempGeneratorAuthors", "TempNetLossAuthors", "dystress_loop", "dystress_tau",
           "normalise", "temp_generator_loop", "tempnet_image_text_loop", "tempnet_views_loop"]
