"""Re-implementations of the reference libraries' bimodal losses, written for these tests from what
strategies/README.md records of them (single process, no gathering). They keep each library's own
numerics and conventions — plain u or u·e^{−b}, its clamps and epsilons, its gradient scale, its update timing — so
the tests can show where this project's strategies agree with them step for step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


class LibAUCGCLossV2:
    """LibAUC 2.0.1 `GCLoss_v2`, tau_mode "global_constant" (SogCLR) or "individual_learnable" (iSogCLR).

    - u is stored as u·e^{−b}, b the running maximum over visits of max_j h_ij/τ_i (the positive's h = 0 included,
      so b >= 0); the moving average rescales the old u by e^{b_old − b_new};
    - first visit, per side: γ = 1 for the whole batch iff `u[index].sum() == 0`, else γ for all;
    - u is clamped at 1e-20 before dividing;
    - loss = ½[mean_i Σ_j p^I_ij h^I_ij + mean_i Σ_j p^T_ij h^T_ij]: (B − 1)/2 times this project's L_3;
    - individual_learnable: G = log ũ + ρ + b − (1/(B−1)) Σ_j p h/τ, m ← (1−β)m + βG, τ ← clamp(τ − ηm), in forward.
    """

    def __init__(self, n: int, tau: float, gamma: float, mode: str, rho: float = 6.0, eta: float = 0.01,
                 beta: float = 0.9, tau_min: float = 0.005, tau_max: float = 0.05) -> None:
        self.gamma, self.mode, self.rho, self.eta, self.beta = gamma, mode, rho, eta, beta
        self.tau_min, self.tau_max = tau_min, tau_max
        zeros = torch.zeros(n, 2, dtype=torch.float64)
        self.u, self.b, self.grad_tau = zeros.clone(), zeros.clone(), zeros.clone()
        self.tau = torch.full((n, 2), tau, dtype=torch.float64)

    def __call__(self, image: Tensor, text: Tensor, index: Tensor) -> Tensor:
        sim = F.normalize(image, dim=1) @ F.normalize(text, dim=1).T
        diffs = [sim - sim.diagonal()[:, None], sim.T - sim.diagonal()[:, None]]
        batch = sim.shape[0]
        neg_mask = 1.0 - torch.eye(batch, dtype=sim.dtype)
        side_losses = []
        for side, h in enumerate(diffs):
            tau = self.tau[index, side][:, None]
            scaled = (h / tau).detach()
            old_b = self.b[index, side].clone()
            self.b[index, side] = torch.maximum(old_b, scaled.max(dim=1).values)
            new_b = self.b[index, side]
            neg = torch.exp(scaled - new_b[:, None]) * neg_mask
            g = neg.sum(dim=1) / (batch - 1)
            if float(self.u[index, side].sum()) == 0.0:
                u = g
            else:
                u = (1 - self.gamma) * self.u[index, side] * torch.exp(old_b - new_b) + self.gamma * g
            u = u.clamp(min=1e-20)
            p = (neg / u[:, None]).detach()
            self.u[index, side] = u
            side_losses.append((p * h).sum(dim=1).mean())
            if self.mode == "individual_learnable":
                grad = torch.log(u) + self.rho + new_b - (p * scaled).sum(dim=1) / (batch - 1)
                self.grad_tau[index, side] = (1 - self.beta) * self.grad_tau[index, side] + self.beta * grad
                new_tau = self.tau[index, side] - self.eta * self.grad_tau[index, side]
                self.tau[index, side] = new_tau.clamp(self.tau_min, self.tau_max)
        return (side_losses[0] + side_losses[1]) / 2

    def plain_u(self) -> Tensor:
        """(N, 2) u itself: the stored u·e^{−b} times e^{b}."""
        return self.u * torch.exp(self.b)


class FastCLIPv3:
    """FastCLIP-v3: `FastCLIPLoss(multiply_tau=True)` with `temperature_scheme global_learnable`, in one process.

    - plain u, 0 = never visited; γ comes from `adjust_gamma(epoch)`: 1 in epoch 0, then the cosine schedule down to
      γ over `decay_epochs`; while γ < 1 a pair whose u is < 1e-35 takes u = g;
    - the loss splits into an anchor half (candidates detached) and a candidate half (anchors detached), both with
      the logit scale attached: [mean_i Σ_X g1^X_i/(u^X_i + ε) + mean_i Σ_X g2^X_i/(u^X_i + ε)]/2 · τ.detach()
      + ρτ + τ · mean_i (log u^I_i + log u^T_i)/2, so autograd counts Ĥ twice in ∂/∂θ;
    - θ = log(1/τ) is trained by AdamW (no weight decay) with lr `lr_tau`, multiplied by 1/3 while τ <= 0.03
      (step_thresh, checked before the step); then θ is clamped to [0, ln 100].
    """

    def __init__(self, n: int, tau_init: float, rho: float, gamma: float, decay_epochs: float, lr_tau: float,
                 eps: float = 1e-14) -> None:
        self.rho, self.gamma_final, self.decay_epochs, self.lr_tau, self.eps = rho, gamma, decay_epochs, lr_tau, eps
        self.u = torch.zeros(n, 2, dtype=torch.float64)
        self.theta = torch.tensor(math.log(1 / tau_init), dtype=torch.float64, requires_grad=True)
        self.opt = torch.optim.AdamW([self.theta], lr=lr_tau, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def gamma(self, epoch: int) -> float:
        if epoch == 0:
            return 1.0
        if epoch >= self.decay_epochs:
            return self.gamma_final
        return 0.5 * (1 + math.cos(math.pi * epoch / self.decay_epochs)) * (1 - self.gamma_final) + self.gamma_final

    def _exp_diffs(self, anchor_img: Tensor, anchor_txt: Tensor, cand_img: Tensor, cand_txt: Tensor,
                   scale: Tensor) -> list[Tensor]:
        diag = (anchor_img * anchor_txt).sum(dim=1, keepdim=True)
        batch = anchor_img.shape[0]
        mask = 1.0 - torch.eye(batch, dtype=diag.dtype)
        out = []
        for sim in (anchor_img @ cand_txt.T, anchor_txt @ cand_img.T):
            out.append((torch.exp((sim - diag) * scale) * mask).sum(dim=1) / (batch - 1))
        return out

    def loss(self, image: Tensor, text: Tensor, index: Tensor, epoch: int) -> Tensor:
        img, txt = F.normalize(image, dim=1), F.normalize(text, dim=1)
        scale = self.theta.exp()
        first = self._exp_diffs(img, txt, img.detach(), txt.detach(), scale)
        second = self._exp_diffs(img.detach(), txt.detach(), img, txt, scale)
        gamma = self.gamma(epoch)
        u = (1 - gamma) * self.u[index] + gamma * torch.stack([g.detach() for g in first], dim=1)
        if gamma < 1.0:
            bad = self.u[index] < 1e-35
            u = torch.where(bad, torch.stack([g.detach() for g in first], dim=1), u)
        self.u[index] = u
        pg = sum((first[s] / (u[:, s] + self.eps)).mean() + (second[s] / (u[:, s] + self.eps)).mean() for s in (0, 1))
        return pg / 2 / scale.detach() + self.rho / scale + torch.log(u).sum(dim=1).mean() / 2 / scale

    def step(self) -> None:
        """step_thresh, then the AdamW step on θ, then the clamp."""
        tau = float(torch.exp(-self.theta.detach()))
        for group in self.opt.param_groups:
            group["lr"] = self.lr_tau / 3 if tau <= 0.03 else self.lr_tau
        self.opt.step()
        self.opt.zero_grad()
        with torch.no_grad():
            self.theta.clamp_(0.0, math.log(100.0))
