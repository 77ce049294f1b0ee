"""The `Strategy` base class, the `Clock` and the `StepOut` record.

A strategy turns the raw projector outputs of a batch's two paired inputs into a contrastive loss and owns whatever
temperature state that needs (a global τ, a learnable log-scale, per-sample τ_i and moving averages). What the two
inputs are is the strategy's `pairing` (README.md, "Pairings"): two augmented views of each sample ("views") or an
image and its caption ("image_text"). The contract:

    out = strategy(a, b, idx, clock)    # a, b: (B, d + extra_outputs) raw outputs; idx: (B,) distinct dataset indices
    out.loss.backward(); opt.step()
    strategy.update(out, idx, clock)    # no-grad state step; a no-op for stateless strategies
    strategy.temperatures()             # (N,) current τ per training sample; (N, 2) for image_text

`forward` never mutates state; everything `update` needs travels in `StepOut.saved`, detached. State lives in
registered buffers, so `state_dict()`, `.to()` and checkpoints carry it.
"""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Clock:
    """Where training is when a batch is seen: `step` is the global optimiser step (0-based), `epoch` the current
    epoch (0-based), `epochs` the run's length and `steps_per_epoch` the steps of one epoch."""

    step: int = 0
    epoch: int = 0
    epochs: int = 1
    steps_per_epoch: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.step < 0:
            raise ValueError(f"Clock needs step >= 0, epochs >= 1 and steps_per_epoch >= 1, got {self}")

    @property
    def epoch_float(self) -> float:
        """Training progress in (fractional) epochs: step / steps_per_epoch."""
        return self.step / self.steps_per_epoch


PAIRINGS = ("views", "image_text")  # what a batch's two inputs are: two augmented views, or an image and its caption


def tau_shape(pairing: str, rows: int) -> tuple[int, ...]:
    """Shape of a per-sample temperature table: (rows,) for views; (rows, 2) for image_text, column 0 the image
    anchors' τ and column 1 the text anchors'."""
    return (rows,) if pairing == "views" else (rows, 2)


@dataclass
class StepOut:
    """What one forward pass returns.

    loss:  scalar, differentiable w.r.t. the inputs (and learnable τ).
    tau:   temperatures this batch used, `tau_shape(pairing, B)`: (B,) for views, those of the view-1 anchors
           (per-sample strategies use the same τ_i for both views); (B, 2) for image_text, [image τ, text τ].
    logs:  scalar tensors for logging, never `.item()`-ed inside the strategy (no host sync per step).
    saved: detached tensors that `update` consumes.
    """

    loss: Tensor
    tau: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)
    saved: dict[str, Tensor] = field(default_factory=dict)


# While `Strategy.hyperparameter_ranges` builds a default config, the checks below also record what they allow, so
# the ranges a listing shows are the ones validation enforces (not a second copy that could drift).
_RECORDED_RANGES: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("ranges", default=None)


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """Raise ValueError naming `name` and its allowed range if `value` lies outside it."""
    ok = True
    if low is not None:
        ok &= value > low if low_open else value >= low
    if high is not None:
        ok &= value < high if high_open else value <= high
    left = "(" if low_open else "["
    right = ")" if high_open or high is None else "]"
    interval = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
    _record(name, interval)
    if not ok:
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise ValueError naming `name` and the valid choices if `value` is not one of them."""
    _record(name, " | ".join(choices))
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _record(name: str, allowed: str) -> None:
    recorded = _RECORDED_RANGES.get()
    if recorded is not None:
        recorded.setdefault(name, allowed)


class Strategy(nn.Module):
    """Base class of every temperature strategy.

    Subclasses set `Config` (a frozen dataclass of hyperparameters that validates itself in `__post_init__`),
    implement `compute(z1, z2, idx, clock) -> StepOut` on L2-normalised float32 features, `temperatures()` and
    `tau_bounds()`, and may override `update`. What a strategy is and needs is declared, never sniffed:

    - `per_sample_state`: it keeps buffers indexed by training sample (moving averages u, τ_i, momentum);
    - `per_sample_tau`: `temperatures()` can differ between samples (τ analytics apply);
    - `learnable`: it owns `nn.Parameter`s trained by the optimiser, in their own group (`param_group()`);
    - `tau_hyperparameters`: the Config fields that hold a temperature (bounds, contract tests, search spaces);
    - `build_options`: keywords `build_config` takes besides the Config fields (e.g. a preset name);
    - `pairing`: what the two inputs of a batch are, one of `PAIRINGS` (set by `register_strategy`); a strategy
      name can have one class per pairing;
    - `extra_outputs`: how many columns the encoder's projector must emit beyond the feature width d. The last
      `extra_outputs` columns of a and b belong to the strategy (e.g. TaU's uncertainty logit); it splits them off
      itself by overriding `compute_raw`, and only the first d columns are normalised as features.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    per_sample_state: ClassVar[bool] = False
    per_sample_tau: ClassVar[bool] = False
    learnable: ClassVar[bool] = False
    tau_hyperparameters: ClassVar[tuple[str, ...]] = ()
    build_options: ClassVar[tuple[str, ...]] = ()  # keywords of `build_config` that are not Config fields (presets)
    pairing: ClassVar[str] = "views"  # what a batch pairs: two augmented views of one sample, or image and text
    extra_outputs: ClassVar[int] = 0  # projector columns beyond d that the strategy consumes (the last ones)

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
    def hyperparameter_names(cls) -> list[str]:
        """The Config's field names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls.Config)]

    @classmethod
    def accepted_hyperparameters(cls) -> list[str]:
        """Every keyword `create_strategy` takes for this strategy: the Config fields and the build options."""
        return [*cls.hyperparameter_names(), *cls.build_options]

    @classmethod
    def build_config(cls, **hyperparameters: Any) -> Any:
        """The config dataclass from keyword hyperparameters; unknown names raise ValueError listing the valid ones.
        Subclasses with presets accept them here (e.g. `preset="libauc"`), so every entry point shares them."""
        unknown = sorted(set(hyperparameters) - set(cls.hyperparameter_names()))
        if unknown:
            close = difflib.get_close_matches(unknown[0], cls.accepted_hyperparameters(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown hyperparameter(s) {unknown} for strategy {cls.name!r}{hint}; "
                             f"valid: {cls.hyperparameter_names()}")
        return cls.Config(**hyperparameters)

    @classmethod
    def resolve_hyperparameters(cls, **hyperparameters: Any) -> dict[str, Any]:
        """Every hyperparameter with its value after defaults and presets: passing the result back to `create`
        builds the same config, so it is what result rows, hashes and tracking record."""
        return dataclasses.asdict(cls.build_config(**hyperparameters))

    @classmethod
    def create(cls, num_samples: int, **hyperparameters: Any) -> Strategy:
        """Build from keyword hyperparameters (what `create_strategy` calls)."""
        return cls(num_samples, cls.build_config(**hyperparameters))

    @classmethod
    def pinned_tau_hyperparameters(cls, tau: float) -> dict[str, Any]:
        """Hyperparameters that put every temperature this strategy can use at `tau` (e.g. the contract's
        smallest τ); by default every declared τ field set to `tau`."""
        return dict.fromkeys(cls.tau_hyperparameters, tau)

    @classmethod
    def hyperparameter_ranges(cls) -> dict[str, str]:
        """What each hyperparameter may be, as the config's own checks state it when the defaults are built
        (bounds that depend on another field, like τ_init in [τ_min, τ_max], are shown at the defaults)."""
        token = _RECORDED_RANGES.set({})
        try:
            cls.build_config()
            return dict(_RECORDED_RANGES.get())
        finally:
            _RECORDED_RANGES.reset(token)

    def hyperparameters(self) -> dict[str, Any]:
        """The resolved hyperparameters of this instance."""
        return dataclasses.asdict(self.config)

    def param_group(self) -> dict[str, Any] | None:
        """Optimiser settings of this strategy's own parameter group (`lr`, `weight_decay`), for learnable
        strategies; None for the others. The runner never applies LARS or the network's weight decay to it."""
        return None

    @classmethod
    def search_space(cls, trial: Any, *, epochs: int | None = None) -> dict[str, Any]:
        """Hyperparameters suggested by an Optuna `trial` (keyword arguments for `create_strategy`)."""
        return {}

    @classmethod
    def search_grid(cls, *, epochs: int | None = None) -> dict[str, list[Any]]:
        """A fixed grid for paper-style "accuracy vs hyperparameter" curves: name -> values."""
        return {}

    # ---- the step -----------------------------------------------------------------------------------------------
    def forward(self, a: Tensor, b: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """Loss of one batch. a, b: (B, d + extra_outputs) raw projector outputs (views: the two views; image_text:
        image and text); idx: (B,) dataset indices (of the samples, or of the image–caption pairs)."""
        if self.check_inputs:
            self._check_batch(a, b, idx)
        # Similarities, exp and log run in float32 (or float64 if given) even under autocast: bf16 is too coarse
        # once divided by τ = 0.05.
        dtype = torch.promote_types(a.dtype, torch.float32)
        with torch.autocast(device_type=a.device.type, enabled=False):
            return self.compute_raw(a.to(dtype), b.to(dtype), idx, clock)

    def compute_raw(self, a: Tensor, b: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """The step on raw float32 outputs (B, d + extra_outputs). Default: normalise and call `compute`; a strategy
        with `extra_outputs` overrides this to split its columns off first (`split_outputs`)."""
        return self.compute(F.normalize(a, dim=1), F.normalize(b, dim=1), idx, clock)

    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """The step on L2-normalised (B, d) features: the two views, or image (z1) and text (z2)."""
        raise NotImplementedError

    def split_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, d + k) raw outputs -> (normalised (B, d) features, raw (B, k) extra columns), k = `extra_outputs`."""
        d = x.shape[1] - self.extra_outputs
        return F.normalize(x[:, :d], dim=1), x[:, d:]

    def tau_shape(self, rows: int) -> tuple[int, ...]:
        """(rows,) for views, (rows, 2) for image_text: the shape of `temperatures()` and `StepOut.tau`."""
        return tau_shape(self.pairing, rows)

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """State step after the optimiser step (per-sample τ, moving averages, clamps). Default: nothing."""

    def temperatures(self) -> Tensor:
        """The current temperature of every training sample, `tau_shape(N)`: (N,) for views; (N, 2) for image_text,
        column 0 the image-anchor τ and column 1 the text-anchor τ of each pair."""
        raise NotImplementedError

    def tau_bounds(self) -> tuple[float, float]:
        """The interval every temperature this strategy can use lies in."""
        raise NotImplementedError

    # ---- helpers ------------------------------------------------------------------------------------------------
    def _check_batch(self, a: Tensor, b: Tensor, idx: Tensor) -> None:
        # Both pairings give two (B, D) tensors of one width: two views, or image and text features projected into
        # one embedding space; D = d + extra_outputs.
        if a.ndim != 2 or a.shape != b.shape:
            raise ValueError(f"a and b must both be (B, d) ({self.pairing}); got {tuple(a.shape)} and "
                             f"{tuple(b.shape)}")
        if a.shape[1] <= self.extra_outputs:
            raise ValueError(f"strategy {self.name!r} needs d + {self.extra_outputs} columns (extra_outputs = "
                             f"{self.extra_outputs}) with d >= 1; got {a.shape[1]}")
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
        return ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())

