"""Optimisers, parameter groups and the learning-rate schedule of a training run.

    lr = scaled_lr(0.3, batch_size=512)                   # SimCLR: 0.3 × 512/256
    opt = build_optimizer(model, strategy, name="lars", lr=lr, weight_decay=1e-6)
    sched = build_scheduler(opt, total_steps=epochs * steps_per_epoch, warmup_steps=10 * steps_per_epoch)
    ... opt.step(); sched.step()                          # once per optimiser step, not per epoch

Parameter groups (each has a "name" key): "weights" (model tensors with ≥ 2 dims: weight decay, LARS adaptation),
"no_decay" (biases and normalisation scales/shifts: neither, as in SimCLR and most LARS recipes), "strategy" (the
strategy's own parameters, e.g. the learnable log-inverse temperature, with the lr and weight decay the strategy
declares in `param_group()`, never LARS-scaled; see strategies/README.md, `learnable`). Empty groups are left out.

Schedule convention: one warm-up + cosine *multiplier* scales every group's own base lr, so the strategy group runs at
tau_lr × multiplier — τ warms up and anneals with the network, and its lr never depends on the network's lr.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from tempbench.strategies import Strategy

OPTIMIZERS = ("adamw", "lars", "sgd")
LR_SCALING_RULES = ("linear", "sqrt", "none")
REFERENCE_BATCH = 256  # SimCLR's linear rule: lr = base_lr × batch / 256


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You, Gitman & Ginsburg, 2017; used by SimCLR).

    For a parameter w with gradient g in a group with `lars=True`:
        d = g + wd·w,   trust = η·‖w‖ / (‖g‖ + wd·‖w‖)   (1 where ‖w‖ = 0 or the denominator is 0)
        v ← m·v + trust·d,   w ← w − lr·v
    Groups with `lars=False` take plain SGD-with-momentum steps (trust = 1), identical to `torch.optim.SGD`: the
    lr sits outside the momentum buffer in both, so a scheduled lr acts the same way. Put biases and normalisation
    parameters in such a group with weight_decay=0 (what `build_optimizer` does).
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, lars: bool = True) -> None:
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError(f"LARS needs lr >= 0, momentum in [0, 1), weight_decay >= 0 and trust_coefficient > 0; "
                             f"got {lr=}, {momentum=}, {weight_decay=}, {trust_coefficient=}")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                    "trust_coefficient": trust_coefficient, "lars": lars}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Tensor | None:
        """One update of every parameter that has a gradient. Returns the closure's loss, if a closure is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step_group(group, params)
        return loss

    def _step_group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        wd, lr, momentum = group["weight_decay"], group["lr"], group["momentum"]
        grads = [p.grad for p in params]
        # _foreach ops (as in torch.optim.SGD) launch one kernel per op for the whole group, not one per tensor.
        updates = torch._foreach_add(grads, params, alpha=wd) if wd else [g.clone() for g in grads]
        if group["lars"]:
            torch._foreach_mul_(updates, trust_ratios(params, grads, wd, group["trust_coefficient"]))
        if momentum:
            buffers = self._momentum_buffers(params)
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, updates)
            updates = buffers
        torch._foreach_add_(params, updates, alpha=-lr)

    def _momentum_buffers(self, params: list[Tensor]) -> list[Tensor]:
        """Each parameter's momentum buffer; a new one starts at zero, so the first step is v = d as in SGD."""
        for p in params:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return [self.state[p]["momentum_buffer"] for p in params]


def trust_ratios(params: list[Tensor], grads: list[Tensor], weight_decay: float, eta: float) -> list[Tensor]:
    """Per-tensor LARS ratio η·‖w‖ / (‖g‖ + wd·‖w‖) as 0-d tensors (no host sync); 1 where it is undefined."""
    w_norms = torch._foreach_norm(params)
    g_norms = torch._foreach_norm(grads)
    ratios = []
    for w_norm, g_norm in zip(w_norms, g_norms, strict=True):
        denom = g_norm + weight_decay * w_norm
        ok = (w_norm > 0) & (denom > 0)  # a zero-initialised tensor must still move, so it takes a plain SGD step
        ratios.append(torch.where(ok, eta * w_norm / torch.where(ok, denom, 1.0), 1.0))
    return ratios


def split_model_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights, no_decay): trainable tensors with ≥ 2 dims (conv/linear kernels) and the rest (biases, norm params)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]


def strategy_parameters(strategy: Strategy) -> list[nn.Parameter]:
    """The strategy's trainable parameters, checked against its declared `learnable` capability and group."""
    params = [p for p in strategy.parameters() if p.requires_grad]
    if bool(params) != strategy.learnable:
        raise ValueError(f"strategy {strategy.name!r} declares learnable={strategy.learnable} but has "
                         f"{len(params)} trainable parameter(s)")
    if params and strategy.param_group() is None:
        raise ValueError(f"learnable strategy {strategy.name!r} declares no param_group() (its lr) for its "
                         f"parameters")
    return params


def build_param_groups(model: nn.Module, strategy: Strategy, weight_decay: float, lars: bool) -> list[dict[str, Any]]:
    """The "weights", "no_decay" and "strategy" groups (module docstring); empty ones left out. The `lars` key is
    added only for LARS, since other optimisers would carry it around unused."""
    weights, no_decay = split_model_parameters(model)
    theta = strategy_parameters(strategy)
    if {id(p) for p in theta} & {id(p) for p in weights + no_decay}:
        raise ValueError("the model and the strategy share a parameter; each must sit in exactly one group")
    groups = [
        {"name": "weights", "params": weights, "weight_decay": weight_decay, "lars": True},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0, "lars": False},
        {"name": "strategy", "params": theta, "weight_decay": 0.0, "lars": False, **(strategy.param_group() or {})},
    ]
    if not lars:
        for g in groups:
            g.pop("lars")
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, strategy: Strategy, *, name: str = "sgd", lr: float, weight_decay: float,
                    momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999),
                    trust_coefficient: float = 0.001) -> torch.optim.Optimizer:
    """The optimiser `name` ("sgd", "lars" or "adamw") over `model` and `strategy` in named parameter groups.

    lr and weight_decay apply to the model; the strategy group takes the lr and weight decay its `param_group()`
    declares (no LARS scaling).
    momentum: SGD and LARS; betas: AdamW; trust_coefficient: LARS's η. Frozen parameters are left out.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {list(OPTIMIZERS)}")
    if lr < 0 or weight_decay < 0:
        raise ValueError(f"lr and weight_decay must be >= 0, got {lr=}, {weight_decay=}")
    groups = build_param_groups(model, strategy, weight_decay, lars=name == "lars")
    if not groups:
        raise ValueError("nothing to optimise: neither the model nor the strategy has trainable parameters")
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


class WarmupCosine:
    """lr multiplier at optimiser step t (0-based): t / warmup_steps during warm-up (0 at t = 0), then a cosine from
    1 to `final_lr_ratio`, reached at t = total_steps and held after (Loshchilov & Hutter, 2017; SimCLR's schedule).

    A callable object rather than a lambda, so `LambdaLR.state_dict()` stores its settings for checkpoints.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, final_lr_ratio: float = 0.0) -> None:
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps or not 0.0 <= final_lr_ratio <= 1.0:
            raise ValueError(f"WarmupCosine needs total_steps >= 1, 0 <= warmup_steps <= total_steps and "
                             f"final_lr_ratio in [0, 1]; got {total_steps=}, {warmup_steps=}, {final_lr_ratio=}")
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.final_lr_ratio = final_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        cosine_steps = self.total_steps - self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / cosine_steps) if cosine_steps else 1.0
        return self.final_lr_ratio + (1.0 - self.final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                    final_lr_ratio: float = 0.0) -> LambdaLR:
    """A `LambdaLR` applying one `WarmupCosine` multiplier to every group's base lr; call `.step()` per optimiser
    step. Its `state_dict()` round-trips (step count and schedule settings)."""
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, final_lr_ratio))


def scaled_lr(base_lr: float, batch_size: int, rule: str = "linear") -> float:
    """SimCLR's batch-size scaling (Chen et al., 2020, §B.1 and its code): "linear" gives base_lr × batch / 256
    (SimCLR: base 0.3), "sqrt" gives base_lr × √batch (SimCLR: base 0.075), "none" gives base_lr."""
    if rule not in LR_SCALING_RULES:
        raise ValueError(f"unknown lr scaling rule {rule!r}; valid: {list(LR_SCALING_RULES)}")
    if batch_size < 1 or base_lr < 0:
        raise ValueError(f"scaled_lr needs batch_size >= 1 and base_lr >= 0, got {batch_size=}, {base_lr=}")
    if rule == "linear":
        return base_lr * batch_size / REFERENCE_BATCH
    if rule == "sqrt":
        return base_lr * math.sqrt(batch_size)
    return base_lr
