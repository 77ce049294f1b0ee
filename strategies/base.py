"""The `Strategy` base class, the `Clock` and the `StepOut` record.

A strategy turns the raw projector outputs of a batch's two paired inputs into a contrastive loss and owns whatever
temperature state that needs (a global τ, a learnable log-scale, per-sample τ_i and moving averages). What the two
inputs are is the strategy's `pairing` (README.md, "Pairings"): two augmented views of each sample ("views") or an
image and its caption ("image_text"). How it is used:

    out = strategy(a, b, idx, clock)    # a, b: (B, d + extra_outputs) raw outputs; idx: (B,) distinct dataset indices
                                        # (image_text may also index its two columns apart: idx (B, 2), `rows_of`)
    out.loss.backward(); opt.step()
    strategy.update(out, idx, clock)    # no-grad state step; a no-op for stateless strategies
    strategy.temperatures()             # (N,) current τ per training sample; (N, 2) for image_text

`forward` never mutates state; everything `update` needs travels in `StepOut.saved`, detached. State lives in
registered buffers, so `state_dict()`, `.to()` and checkpoints carry it.

What a strategy writes: its Config (hyperparameters, `spec.py`), `compute` (the loss of a batch of normalised
features) and, if it keeps state, `update`. The rest is declared (class attributes) or derived here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .spec import StrategySpec, check_choice, check_range  # noqa: F401  (the checks: re-exported for older plug-ins)


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


# What a batch's two inputs are, and the trailing shape of one sample's temperatures under each: views share one τ
# per sample (both views are anchors of the same sample); image_text keeps [image-anchor τ, text-anchor τ].
TAU_COLUMNS: dict[str, tuple[int, ...]] = {"views": (), "image_text": (2,)}
PAIRINGS = tuple(TAU_COLUMNS)


def tau_shape(pairing: str, rows: int) -> tuple[int, ...]:
    """Shape of a per-sample temperature table: (rows,) for views; (rows, 2) for image_text, column 0 the image
    anchors' τ and column 1 the text anchors'."""
    return (rows, *TAU_COLUMNS[pairing])


# ---- per-sample state: the batch's rows ---------------------------------------------------------------------------
# An image_text batch indexes its state in one of two ways: idx (B,) gives both anchors of pair i the state row
# idx[i] (one entry per image–caption pair, FastCLIP's indexing); idx (B, 2) holds [image index, caption index] per
# pair (the caption's index is its pair's) and indexes each column by its own, column 0 (the image anchors) by the
# image and column 1 (the text anchors) by the caption (the iSogCLR authors' indexing: an image's captions share its
# image-side state). Strategies read and write their per-sample tables through these two, so they serve both.
def rows_of(state: Tensor, idx: Tensor) -> Tensor:
    """The batch's rows of a per-sample state table: `state[idx]` for idx (B,); for idx (B, 2), (B, 2) with column 0
    from row idx[:, 0] and column 1 from row idx[:, 1] of an (N, 2) table."""
    if idx.ndim == 1:
        return state[idx]
    _check_two_columns(state, idx)
    return torch.stack([state[idx[:, 0], 0], state[idx[:, 1], 1]], dim=1)


def set_rows(state: Tensor, idx: Tensor, values: Tensor) -> None:
    """Write `values` (the shape `rows_of(state, idx)` has) into the batch's rows of `state`, in place."""
    if idx.ndim == 1:
        state[idx] = values
        return
    _check_two_columns(state, idx)
    state[idx[:, 0], 0] = values[:, 0]
    state[idx[:, 1], 1] = values[:, 1]


def _check_two_columns(state: Tensor, idx: Tensor) -> None:
    """idx (B, 2) indexes the two columns of an (N, 2) table apart; any other table has no columns to split."""
    if idx.ndim != 2 or idx.shape[1] != 2 or state.ndim != 2 or state.shape[1] != 2:
        raise ValueError(f"an idx of shape {tuple(idx.shape)} ([image index, caption index] per pair) indexes an "
                         f"(N, 2) state table by column; this table is {tuple(state.shape)}")


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


class Strategy(nn.Module, StrategySpec):
    """Base class of every temperature strategy.

    A subclass writes its `Config` (with `presets`, `space`, `grid` if any: `spec.StrategySpec`), `compute(z1, z2,
    idx, clock) -> StepOut` on L2-normalised features, and `update` if it keeps state. It declares, never has
    sniffed:

    - `per_sample_state`: it keeps buffers indexed by training sample (moving averages u, τ_i, momentum);
    - `per_sample_tau`: `temperatures()` can differ between samples (τ analytics apply);
    - `learnable`: it owns `nn.Parameter`s trained by the optimiser, in their own group (`param_group()`);
    - `tau_buffer`: the buffer holding the current τ, a scalar or `tau_shape(N)` (what `temperatures()` reports);
    - `extra_outputs`: how many columns the encoder's projector must emit beyond the feature width d. The last
      `extra_outputs` columns of a and b belong to the strategy (e.g. TaU's uncertainty logit); it splits them off
      itself by overriding `compute_raw`, and only the first d columns are normalised as features;
    - `pairing` (set by `register_strategy`): what the two inputs of a batch are, one of `PAIRINGS`; a strategy
      name can have one class per pairing.

    Derived, each overridable: `temperatures()` from `tau_buffer`, `tau_bounds()` from the declared τ fields,
    `param_group()` from `learnable` and the Config's `tau_lr`.
    """

    per_sample_state: ClassVar[bool] = False
    per_sample_tau: ClassVar[bool] = False
    learnable: ClassVar[bool] = False
    tau_buffer: ClassVar[str] = "tau"
    extra_outputs: ClassVar[int] = 0  # projector columns beyond d that the strategy consumes (the last ones)

    def __init__(self, num_samples: int, config: Any) -> None:
        super().__init__()
        if not isinstance(num_samples, int) or num_samples < 2:
            raise ValueError(f"num_samples must be an int >= 2 (the training-set size), got {num_samples!r}")
        self.num_samples = num_samples
        self.config = config
        # The runner turns this off once it has validated the data order itself: the checks cost a host sync on CUDA.
        self.check_inputs = True

    # ---- the step: what a subclass writes -----------------------------------------------------------------------
    def compute(self, z1: Tensor, z2: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """The step on L2-normalised (B, d) features: the two views, or image (z1) and text (z2); idx: (B,), or
        (B, 2) for image_text (`rows_of`)."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, out: StepOut, idx: Tensor, clock: Clock) -> None:
        """State step after the optimiser step (per-sample τ, moving averages, clamps). Default: nothing."""

    # ---- derived from the declarations --------------------------------------------------------------------------
    def forward(self, a: Tensor, b: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """Loss of one batch. a, b: (B, d + extra_outputs) raw projector outputs (views: the two views; image_text:
        image and text); idx: (B,) dataset indices (of the samples, or of the image–caption pairs), or for
        image_text (B, 2) [image index, caption index] per pair (`rows_of`)."""
        if self.check_inputs:
            check_batch(self, a, b, idx)
        # Similarities, exp and log run in float32 (or float64 if given) even under autocast: bf16 is too coarse
        # once divided by τ = 0.05.
        dtype = torch.promote_types(a.dtype, torch.float32)
        with torch.autocast(device_type=a.device.type, enabled=False):
            return self.compute_raw(a.to(dtype), b.to(dtype), idx, clock)

    def compute_raw(self, a: Tensor, b: Tensor, idx: Tensor, clock: Clock) -> StepOut:
        """The step on raw float32 outputs (B, d + extra_outputs). Default: normalise and call `compute`; a strategy
        with `extra_outputs` overrides this to split its columns off first (`split_outputs`)."""
        return self.compute(F.normalize(a, dim=1), F.normalize(b, dim=1), idx, clock)

    def temperatures(self) -> Tensor:
        """The current temperature of every training sample, `tau_shape(N)`: (N,) for views; (N, 2) for image_text,
        column 0 the image-anchor τ and column 1 the text-anchor τ of each pair. Default: the `tau_buffer` buffer,
        a global τ broadcast to every sample."""
        return self.get_buffer(self.tau_buffer).expand(self.tau_shape(self.num_samples)).clone()

    def tau_bounds(self) -> tuple[float, float]:
        """The interval every temperature this strategy can use lies in. Default: the smallest and largest declared
        τ field, right for a τ that is one of them, moves between them (schedules) or is clamped to them; a rule
        that leaves them (MACL, TaU) overrides this. Tight, the clamp the code applies: result rows count the τ
        entries sitting at each end (`tau_at_min`, `tau_at_max`)."""
        taus = [getattr(self.config, name) for name in self.tau_hyperparameters]
        if not taus:
            raise NotImplementedError(f"strategy {self.name!r} declares no tau_hyperparameters: override tau_bounds()")
        return (min(taus), max(taus))

    def param_group(self) -> dict[str, Any] | None:
        """Optimiser settings of this strategy's own parameter group, for learnable strategies: the Config's
        `tau_lr` and no weight decay (never LARS or the network's weight decay); None for the others."""
        if not self.learnable:
            return None
        if not hasattr(self.config, "tau_lr"):
            raise ValueError(f"learnable strategy {self.name!r} needs a Config field `tau_lr` (its parameters' "
                             f"learning rate), or its own param_group()")
        return {"lr": self.config.tau_lr, "weight_decay": 0.0}

    def hyperparameters(self) -> dict[str, Any]:
        """The resolved hyperparameters of this instance."""
        return dataclasses.asdict(self.config)

    # ---- small helpers ------------------------------------------------------------------------------------------
    def tau_shape(self, rows: int) -> tuple[int, ...]:
        """(rows,) for views, (rows, 2) for image_text: the shape of `temperatures()` and `StepOut.tau`."""
        return tau_shape(self.pairing, rows)

    def split_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, d + k) raw outputs -> (normalised (B, d) features, raw (B, k) extra columns), k = `extra_outputs`."""
        d = x.shape[1] - self.extra_outputs
        return F.normalize(x[:, :d], dim=1), x[:, d:]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())


def check_batch(strategy: Strategy, a: Tensor, b: Tensor, idx: Tensor) -> None:
    """Raise ValueError unless a, b are two (B, d + extra_outputs) tensors with B >= 2 and idx holds B distinct
    integer indices in [0, num_samples): idx (B,), or for image_text (B, 2) with each column distinct (`rows_of`).
    Costs a host sync on CUDA (min, max, unique)."""
    # Both pairings give two (B, D) tensors of one width: two views, or image and text features projected into one
    # embedding space.
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be (B, d) ({strategy.pairing}); got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    extra = strategy.extra_outputs
    if a.shape[1] <= extra:
        raise ValueError(f"strategy {strategy.name!r} needs d + {extra} columns (extra_outputs = {extra}) with d >= 1; "
                         f"got {a.shape[1]}")
    if a.shape[0] < 2:
        raise ValueError(f"a batch needs at least 2 samples (negatives come from the batch), got {a.shape[0]}")
    shapes = [(a.shape[0],), (a.shape[0], 2)] if strategy.pairing == "image_text" else [(a.shape[0],)]
    if idx.shape not in shapes or idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise ValueError(f"idx must be an integer tensor of shape {' or '.join(map(str, shapes))}, got {idx.dtype} "
                         f"{tuple(idx.shape)}")
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= strategy.num_samples:
        raise ValueError(f"idx must lie in [0, {strategy.num_samples}) (num_samples), got values in [{lo}, {hi}]")
    if any(torch.unique(column).numel() != len(column) for column in idx.reshape(len(idx), -1).T):
        raise ValueError("idx holds duplicate dataset indices; a batch must hold distinct samples")
