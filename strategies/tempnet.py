"""`tempnet`: a small network predicts each input's τ, trained on the robust global contrastive loss (Qiu, Hu, Zhou,
Yuan, Zhang, Yang, "To Cool or not to Cool? Temperature Network Meets Large Foundation Models via DRO", ICML 2024,
arXiv 2404.04575; zhqiu/TempNet `Bimodal_CL/models/losses.py`, `TempGenerator` and `iSogCLR_TempNet_Loss`).
image_text: the authors' loss. views: this project's adaptation (one network for both views)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Clock, StepOut, Strategy, set_rows
from .gcl_image_text import ImageTextGCL, check_moving_average, rho_ceiling, suggest_below_rho_ceiling
from .losses import FIRST_VISIT_RULES, global_contrastive_step
from .registry import register_strategy
from .spec import check_choice, check_range, frozen, log_uniform, uniform


@dataclass(frozen=True)
class TempNetConfig:
    """views (ours, untested): the `isogclr` (views) τ range and ρ; the network as the authors'."""

    tau_min: float = 0.05
    tau_max: float = 1.0
    rho: float = 0.4  # KL radius of the DRO objective
    gamma: float = 0.8  # moving-average weight of the new batch estimate of u
    first_visit: str = "sample"  # γ = 1 on a first visit: per "sample", per "batch", or "none"
    tau_lr: float = 1e-3  # lr of the networks' group (the run's optimiser, no weight decay)
    num_prototypes: int = 256  # M
    feature_dim: int = 256  # D, the network's width: inputs of width d <= D use the first d columns of W
    dropout: float = 0.5  # on σ(Wz + c), in training mode
    net_seed: int = 0  # the networks' initialisation and the dropout masks (a function of seed and step)

    def __post_init__(self) -> None:
        check_range("tau_min", self.tau_min, 0.0, None, low_open=True)
        check_range("tau_max", self.tau_max, self.tau_min, None)
        check_range("rho", self.rho, 0.0, None)
        check_range("gamma", self.gamma, 0.0, 1.0, low_open=True)
        check_choice("first_visit", self.first_visit, FIRST_VISIT_RULES)
        check_range("tau_lr", self.tau_lr, 0.0, None)
        check_range("num_prototypes", self.num_prototypes, 1, None)
        check_range("feature_dim", self.feature_dim, 1, None)
        check_range("dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_range("net_seed", self.net_seed, 0, 10**6)  # keeps the dropout seeds below 2^63


@dataclass(frozen=True)
class TempNetImageTextConfig(TempNetConfig):
    """The authors' values (τ ∈ [0.005, 0.05], γ 0.8, lr 3e-5 as their script) with ρ rescaled to a batch of 128:
    log 127 − 0.62 = 4.2 keeps their gap below log(B − 1) (ρ 7.0 on a gathered 2048, log 2047 = 7.62)."""

    tau_min: float = 0.005  # `TempGenerator`'s default
    tau_max: float = 0.05  # hard-coded in `TempGenerator`
    rho: float = 4.2
    tau_lr: float = 3e-5  # their script's `lr_temp_net` (argparse: 6e-6), for Adam(W)
    gamma_schedule: str = "constant"
    gamma_decay_epochs: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_moving_average(self)


class TemperatureNetwork(nn.Module):
    """The authors' `TempGenerator`: x = Dropout(σ(W z + c)); q = x P̂ᵀ, P̂ the row-normalised prototypes (M, D);
    w = softmax(q / e^κ); o = Linear_{M→1}((w − 1/M) ⊙ σ(q)); τ = (τ_max − τ_min) σ(o) + τ_min. Parameters are
    drawn from `seed`, not the global RNG (nn.Linear's init law), so a run's other draws do not move."""

    def __init__(self, config: TempNetConfig, seed: int) -> None:
        super().__init__()
        width, protos = config.feature_dim, config.num_prototypes
        gen, bound = torch.Generator().manual_seed(seed), 1.0 / math.sqrt(width)
        self.tau_min, self.tau_max = config.tau_min, config.tau_max
        self.weight = nn.Parameter((2.0 * torch.rand(width, width, generator=gen) - 1.0) * bound)
        self.bias = nn.Parameter((2.0 * torch.rand(width, generator=gen) - 1.0) * bound)
        self.log_scale = nn.Parameter(torch.tensor(math.log(0.01)))  # κ
        self.prototypes = nn.Parameter(torch.randn(protos, width, generator=gen))
        self.head_weight = nn.Parameter(torch.ones(1, protos))
        self.head_bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("prototypes_ready", torch.tensor(False))  # set from a first batch's features yet?

    def forward(self, z: Tensor, shift: Tensor, keep: Tensor | None) -> Tensor:
        """(R,) τ of (R, d) detached features. `shift` (k, D): added to the first k prototypes until they are
        adopted (`adopt_prototypes`); `keep` (R, D): dropout's scaled mask, or None."""
        shift = F.pad(shift, (0, 0, 0, len(self.prototypes) - len(shift)))
        # P + (features − P) detached: the features' values, P's gradient (theirs: P = features before step 1)
        protos = self.prototypes + torch.where(self.prototypes_ready, 0.0, shift)
        x = torch.sigmoid(F.linear(z, self.weight[:, :z.shape[1]], self.bias))  # = z zero-padded to D
        x = x if keep is None else x * keep
        q = x @ F.normalize(protos, dim=1).T
        w = torch.softmax(q / self.log_scale.exp(), dim=1)
        o = F.linear((w - 1.0 / len(protos)) * torch.sigmoid(q), self.head_weight, self.head_bias)[:, 0]
        return (self.tau_max - self.tau_min) * torch.sigmoid(o) + self.tau_min

    @torch.no_grad()
    def adopt_prototypes(self, shift: Tensor) -> None:
        """After the first step: add its `shift` (features − P before the step) to the first k prototypes, which
        makes them the features moved by the optimiser's step, as the authors' prototypes set to those features
        before step 1 (here, so `forward` has no side effects). A no-op afterwards."""
        self.prototypes[:len(shift)] += torch.where(self.prototypes_ready, 0.0, shift.to(self.prototypes.dtype))
        self.prototypes_ready.fill_(True)


class TempNetBase(Strategy):
    """What both pairings share. The networks (`networks`) train in the strategy's group of the run's optimiser, on
    loss = surrogate + (1/B) Σ_anchors G τ with G detached: the surrogate carries the weight gradient (τ only inside
    its detached weights) and the second term, whose inputs are detached, only the networks' (∂/∂τ = G/B). Buffers:
    `log_u`; `last_tau`, the τ each sample's anchors had on its last visit, dropout included ((N,) the view-1 anchor
    for views, (N, 2) for image_text), (τ_min + τ_max)/2, the σ(0) point, before its first visit."""

    per_sample_state = True
    per_sample_tau = True
    learnable = True  # the networks' parameters, at `tau_lr` without weight decay (`param_group()`)
    tau_hyperparameters = ("tau_min", "tau_max")
    tau_buffer = "last_tau"
    network_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, num_samples: int, config: Any) -> None:
        super().__init__(num_samples, config)
        self.networks = nn.ModuleDict({name: TemperatureNetwork(config, config.net_seed * 16 + k)
                                       for k, name in enumerate(self.network_names)})
        mid = 0.5 * (config.tau_min + config.tau_max)
        self.register_buffer("last_tau", torch.full(self.tau_shape(num_samples), mid))

    def network_tau(self, name: str, z: Tensor, protos_from: Tensor, clock: Clock) -> tuple[Tensor, Tensor]:
        """(R,) τ of network `name` on the detached (R, d) features z (its loss never reaches the encoder), and the
        shift that makes its first k = min(M, ·) prototypes the first rows of `protos_from` (zero-padded to D)."""
        c, net = self.config, self.networks[name]
        if z.shape[1] > c.feature_dim:
            raise ValueError(f"tempnet's feature_dim ({c.feature_dim}) is below the feature width {z.shape[1]}")
        first = F.pad(protos_from[:c.num_prototypes].detach(), (0, c.feature_dim - z.shape[1]))
        shift = first - net.prototypes[:len(first)].detach()
        keep = None
        if self.training and c.dropout > 0.0:
            # masks drawn from (net_seed, step, network), so a resumed run repeats them exactly
            gen = torch.Generator(device=z.device).manual_seed(
                (c.net_seed * 2**32 + clock.step) * 16 + self.network_names.index(name))
            draw = torch.rand(z.shape[0], c.feature_dim, generator=gen, device=z.device, dtype=z.dtype)
            keep = (draw >= c.dropout).to(z.dtype) / (1.0 - c.dropout)
        return net(z.detach(), shift, keep), shift

    def finish(self, loss: Tensor, tau: Tensor, log_u: Tensor, weighted: Tensor, saved: dict[str, Tensor],
               offset: Tensor | float = 0.0) -> StepOut:
        """StepOut from the surrogate `loss` and, per anchor, τ (with the networks' graph), the fresh log u and the
        weighted similarity (1/m) Σ p·s (h for image_text); `offset` turns mean τ(log u + ρ) into F̂."""
        fixed = tau.detach()
        with torch.no_grad():
            grad = log_u + self.config.rho - weighted / fixed  # G, as `isogclr`: = ρ − KL at a first visit
            objective = (fixed * (log_u + self.config.rho)).mean() - offset
        temp_loss = 2.0 * (grad * tau).mean()  # (1/B) Σ over the 2B anchors, as the authors' two means
        logs = {"tau_mean": fixed.mean(), "tau_min": fixed.min(), "tau_max": fixed.max(),
                "temp_loss": temp_loss.detach(), "tau_grad_mean": grad.mean(), "objective": objective}
        tau_out = fixed if self.pairing == "image_text" else fixed[:len(fixed) // 2]
        return StepOut(loss=loss + temp_loss, tau=tau_out, logs=logs, saved={**saved, "tau": tau_out})

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """The fresh log u, the τ used, and on the first step the prototypes."""
        set_rows(self.log_u, idx, out.saved["log_u"].to(self.log_u.dtype))
        set_rows(self.last_tau, idx, out.saved["tau"].to(self.last_tau.dtype))
        for name, net in self.networks.items():
            net.adopt_prototypes(out.saved[f"prototypes_{name}"])


@register_strategy("tempnet", pairing="image_text")
class TempNetImageText(TempNetBase, ImageTextGCL):
    """TempNet (Qiu et al., ICML 2024): a network per modality predicts each anchor's τ, trained by DRO (authors' loss).

    τ^I_i = Net_I(z_I,i) and τ^T_i = Net_T(z_T,i); the `sogclr` (image_text) estimator at those τ gives the
    surrogate L_3 and G^X_i = log u^X_i + ρ − Ĥ^X_i/τ^X_i. The image network's prototypes start as the batch's text
    features and vice versa, as theirs (README.md, `tempnet`). Buffers `log_u`, `last_tau`: (N, 2)."""

    Config = TempNetImageTextConfig
    network_names = ("image", "text")
    presets = frozen(
        default=TempNetImageTextConfig(),  # ρ rescaled to B = 128
        authors=TempNetImageTextConfig(rho=7.0),  # their script's ρ, for a gathered batch of 2048
    )
    # ρ: up to just below log(B − 1) of the run's batch (`search_space`; here at B = 512, which holds the default's
    # 4.2; the authors' 7.0 is inside from B ≈ 1200, e.g. their gathered 2048). tau_lr brackets their argparse 6e-6 and
    # script 3e-5; γ their 0.8. τ_min, τ_max are not searched (README.md, "Search spaces").
    space = frozen(rho=uniform(1.0, rho_ceiling(None)), tau_lr=log_uniform(3e-6, 3e-4), gamma=uniform(0.2, 1.0))
    grid = frozen(rho=(2.0, 3.0, 3.5, 4.2, 4.5), tau_lr=(6e-6, 3e-5, 1e-4))

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None, batch_size: int | None = None) -> dict[str, Any]:
        """`space` with ρ's range ending just below log(B − 1) of the run's global batch B (`rho_ceiling`)."""
        return suggest_below_rho_ceiling(trial, cls.space, batch_size)

    def anchor_temperatures(self, z_img: Tensor, z_txt: Tensor, clock: Clock) -> tuple[Tensor, dict[str, Tensor]]:
        """(B, 2) τ with the networks' graph, and each network's prototype shift (cross-modal features)."""
        tau_img, shift_img = self.network_tau("image", z_img, z_txt, clock)
        tau_txt, shift_txt = self.network_tau("text", z_txt, z_img, clock)
        return torch.stack([tau_img, tau_txt], dim=1), {"prototypes_image": shift_img, "prototypes_text": shift_txt}

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """The estimator step at the networks' τ, then the networks' loss."""
        tau, saved = self.anchor_temperatures(z1, z2, clock)
        res = self.gcl(z1, z2, idx, clock, tau.detach())
        return self.finish(res.loss, tau, res.log_u, res.weighted_h, {"log_u": res.log_u, **saved})


@register_strategy("tempnet")
class TempNet(TempNetBase):
    """TempNet (Qiu et al., ICML 2024) on two views (ours): one τ network for all 2B anchors, `isogclr`'s estimator.

    τ_r = Net(z_r) for each anchor row; the `isogclr` (views) estimator at those τ (u per sample: the mean of its
    two views' u, slightly inconsistent as τ₁ ≠ τ₂) and G_r = log u_r + ρ − (1/K) Σ_k p_rk s_rk/τ_r. The prototypes
    start as the batch's features, view 2 first. Buffers `log_u`, `last_tau` (the view-1 anchor's τ): (N,)."""

    Config = TempNetConfig
    network_names = ("views",)
    space = frozen(rho=uniform(0.05, 0.8), tau_lr=log_uniform(1e-5, 1e-2), gamma=uniform(0.5, 1.0))
    grid = frozen(rho=(0.1, 0.2, 0.3, 0.4, 0.5, 0.7), tau_lr=(1e-4, 1e-3, 1e-2))

    def __init__(self, num_samples: int, config: TempNetConfig) -> None:
        super().__init__(num_samples, config)
        self.register_buffer("log_u", torch.full((num_samples,), float("-inf")))

    def anchor_temperatures(self, z1: Tensor, z2: Tensor, clock: Clock) -> tuple[Tensor, dict[str, Tensor]]:
        """(2B,) τ of the anchor rows (view 1, then view 2) with the network's graph, and its prototype shift."""
        tau, shift = self.network_tau("views", torch.cat([z1, z2]), torch.cat([z2, z1]), clock)
        return tau, {"prototypes_views": shift}

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """`isogclr`'s steps 1–6 at the network's per-anchor τ, then the network's loss."""
        c = self.config
        tau, saved = self.anchor_temperatures(z1, z2, clock)
        res = global_contrastive_step(z1, z2, tau.detach()[:, None], self.log_u[idx].to(z1.dtype), c.gamma,
                                      c.first_visit)
        return self.finish(res.loss, tau, res.log_u_rows, res.weighted_sim, {"log_u": res.new_log_u, **saved},
                           offset=res.positive_sim.mean())  # τ log u_s − s⁺ = τ log mean exp(h/τ)
