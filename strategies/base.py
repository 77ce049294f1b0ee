"""The `Strategy` base class, the `Step` clock and the `StepOut` record.

A strategy turns the raw projector outputs of two augmented views into a contrastive loss and owns whatever
temperature state that needs (a global τ, a learnable log-scale, per-sample τ_i and moving averages). The contract:

    out = strategy(a, b, idx, step)     # a, b: (B, d) raw features; idx: (B,) distinct dataset indices
    out.loss.backward(); opt.step()
    strategy.update(out, idx, step)     # no-grad state step; a no-op for stateless strategies
    strategy.temperatures()             # (N,) current τ per training sample

`forward` never mutates state; everything `update` needs travels in `StepOut.saved`, detached. State lives in
registered buffers, so `state_dict()`, `.to()` and checkpoints carry it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Step:
    """Where training is: `step` is the global optimiser step (0-based), `epoch` the current epoch (0-based)."""

    step: int = 0
    epoch: int = 0
    epochs: int = 1
    steps_per_epoch: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.step < 0:
            raise ValueError(f"Step needs step >= 0, epochs >= 1 and steps_per_epoch >= 1, got {self}")

    @property
    def epoch_float(self) -> float:
        """Training progress in (fractional) epochs: step / steps_per_epoch."""
        return self.step / self.steps_per_epoch


@dataclass
class StepOut:
    """What one forward pass returns.

    loss:  scalar, differentiable w.r.t. the inputs (and learnable τ).
    tau:   (B,) temperatures used for the anchors of view 1 (per-sample strategies use the same τ_i for both views).
    logs:  scalar tensors for logging, never `.item()`-ed inside the strategy (no host sync per step).
    saved: detached tensors that `update` consumes.
    """

    loss: Tensor
    tau: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)
    saved: dict[str, Tensor] = field(default_factory=dict)


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """Raise ValueError naming `name` and its allowed range if `value` lies outside it."""
    ok = True
    if low is not None:
        ok &= value > low if low_open else value >= low
    if high is not None:
        ok &= value < high if high_open else value <= high
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open or high is None else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must be in {left}{lo}, {hi}{right}, got {value!r}")


class Strategy(nn.Module):
    """Base class of every temperature strategy.

    Subclasses set `Config` (a dataclass of hyperparameters that validates itself in `__post_init__`), implement
    `compute(z1, z2, idx, step) -> StepOut` on L2-normalised float32 features and `tau_bounds()`, and may override
    `update`. Capabilities are class attributes: `per_sample` (one τ per training sample) and `learnable`
    (τ is an `nn.Parameter` trained by the optimiser, in its own group with learning rate `config.tau_lr`).
    """

    name: ClassVar[str] = ""
    per_sample: ClassVar[bool] = False
    learnable: ClassVar[bool] = False
    Config: ClassVar[type] = object

    def __init__(self, num_samples: int, config: Any) -> None:
        super().__init__()
        if not isinstance(num_samples, int) or num_samples < 2:
            raise ValueError(f"num_samples must be an int >= 2 (the training-set size), got {num_samples!r}")
        self.num_samples = num_samples
        self.config = config
        # The runner turns this off once it has validated the data order itself: the checks cost a host sync on CUDA.
        self.check_inputs = True

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def build_config(cls, **hyperparameters: Any) -> Any:
        """The config dataclass from keyword hyperparameters; unknown names raise ValueError listing the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls.Config)]
        unknown = sorted(set(hyperparameters) - set(valid))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for strategy {cls.name!r}; valid: {valid}")
        return cls.Config(**hyperparameters)

    @classmethod
    def create(cls, num_samples: int, **hyperparameters: Any) -> Strategy:
        """Build from keyword hyperparameters (what `create_strategy` calls); subclasses may add presets here."""
        return cls(num_samples, cls.build_config(**hyperparameters))

    def hparams(self) -> dict[str, Any]:
        """The resolved hyperparameters, for result rows and tracking."""
        return dataclasses.asdict(self.config)

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None) -> dict[str, Any]:
        """Hyperparameters suggested by an Optuna `trial` (keyword arguments for `create_strategy`)."""
        return {}

    @classmethod
    def search_grid(cls, *, epochs: int | None = None) -> dict[str, list[Any]]:
        """A fixed grid for paper-style "accuracy vs hyperparameter" curves: name -> values."""
        return {}

    # ---- the step -----------------------------------------------------------------------------------------------
    def forward(self, a: Tensor, b: Tensor, idx: Tensor, step: Step) -> StepOut:
        """Loss of one batch. a, b: (B, d) raw projector outputs of the two views; idx: (B,) dataset indices."""
        if self.check_inputs:
            self._check_batch(a, b, idx)
        # Similarities, exp and log run in float32 (or float64 if given) even under autocast: bf16 is too coarse
        # once divided by τ = 0.05.
        dtype = torch.promote_types(a.dtype, torch.float32)
        with torch.autocast(device_type=a.device.type, enabled=False):
            z1 = F.normalize(a.to(dtype), dim=1)
            z2 = F.normalize(b.to(dtype), dim=1)
            return self.compute(z1, z2, idx, step)

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, step: Step) -> StepOut:
        raise NotImplementedError

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, step: Step) -> None:
        """State step after the optimiser step (per-sample τ, moving averages, clamps). Default: nothing."""

    def temperatures(self) -> Tensor:
        """(N,) the current temperature of every training sample."""
        raise NotImplementedError

    def tau_bounds(self) -> tuple[float, float]:
        """The interval every temperature this strategy can use lies in."""
        raise NotImplementedError

    # ---- helpers ------------------------------------------------------------------------------------------------
    def _check_batch(self, a: Tensor, b: Tensor, idx: Tensor) -> None:
        if a.ndim != 2 or a.shape != b.shape:
            raise ValueError(f"a and b must both be (B, d); got {tuple(a.shape)} and {tuple(b.shape)}")
        if a.shape[0] < 2:
            raise ValueError(f"a batch needs at least 2 samples (negatives come from the batch), got {a.shape[0]}")
        if idx.shape != (a.shape[0],) or idx.dtype.is_floating_point or idx.dtype == torch.bool:
            raise ValueError(f"idx must be an integer tensor of shape ({a.shape[0]},), got {idx.dtype} "
                             f"{tuple(idx.shape)}")
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.num_samples:
            raise ValueError(f"idx must lie in [0, {self.num_samples}) (num_samples), got values in [{lo}, {hi}]")
        if torch.unique(idx).numel() != idx.numel():
            raise ValueError("idx holds duplicate dataset indices; a batch must hold distinct samples")

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())

