"""Linear probe: multinomial logistic regression on frozen, L2-normalised features (the standard SSL linear
evaluation, e.g. Chen et al., SimCLR, ICML 2020, §B.6 with L-BFGS as in CLIP, Radford et al. 2021, §3.2).

Objective for strength λ: mean_i CE(W x_i + b, y_i) + λ/2 ‖W‖², bias unpenalised; the same problem as scikit-learn's
`LogisticRegression(C=1 / (λ n))`. λ is chosen on a stratified validation split held out from the training features,
then the probe is refitted on all training features and evaluated once on the test set.

Every fit runs to a gradient tolerance, not a fixed budget: with a budget the weakest λ of the grid was always chosen,
because the early stop, not λ, did the regularising. Convergence rule: the max-abs gradient g of the full objective f,
in float64, is at most min(GRAD_TOL, sqrt(2 λ · GAP_RTOL · f)).
- GRAD_TOL = 1e-6 in sklearn's `tol` units: the loss is a mean over unit-norm rows, so every CE gradient entry is
  bounded by 1 at any (W, b) and an absolute tolerance is already a relative one.
- The λ term: near the optimum f − f* ≈ ½ gᵀH⁻¹g, and along directions that separate a class (tail classes, or
  separable data) the CE is flat and only the penalty curves, H ≈ λ, so a gradient g leaves a gap of about g²/(2λ).
  Asking that to stay below GAP_RTOL · f = 1e-5 · f tightens the tolerance where λ is weak and f small; without it,
  at λ=1e-8 on separable digits features, g ≤ 1e-6 still left a relative gap of 3e-2.
Measured against scikit-learn (lbfgs, tol=1e-10) the relative objective gap stays below 2e-5: digits 5e-12 to 2e-6
(λ = 1e-2 ... 1e-8), long-tailed 4,800 × 256 features 2e-8 and 4e-7 (λ = 1e-6, 1e-7); before whitening (below) it
was digits 2e-11 to 2e-5, long-tailed 6,000 × 256 1e-7 to 7e-7 (λ = 1e-6 ... 1e-8), separable 500 × 512 ≤ 2e-5.
Why float64: in float32 the objective (≈1) resolves only ~1e-7, so the strong-Wolfe line search stalls with g ~2e-5
(relative gap 2e-5 on long-tailed 6,000 × 256 features at λ=1e-6) and the tolerance could never be met; float64 costs
under 2x per evaluation on the CPU and reaches g ~5e-8 before rounding stalls it.

The solver is L-BFGS in whitened coordinates (`_Whitened`): a change of variables, so the objective, its optimum and
the stopping rule above are untouched and only the number of iterations changes. On CIFAR-10-LT features (small CNN,
11,165 × 256, λ = 1e-8) one fit took 4,840 iterations in (W, b) and 215 whitened; a cifar10-lt-long evaluation, whose
three probes took 18-20 min, takes about 2 (results/perf/probe-solver/ compares the two on real features).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

WD_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)  # λ on the mean loss; unit-norm features need weak penalties
WD_LIMITS = (1e-8, 1.0)  # the grid extends a decade at a time while the chosen λ is at its edge, within these
VAL_FRACTION = 0.1  # of each class, at least one image when the class has two or more
GRAD_TOL = 1e-6  # max-abs gradient of the full objective (float64) at which a fit counts as converged, see above
GAP_RTOL = 1e-5  # target relative objective gap that tightens GRAD_TOL at weak λ, see above
MAX_ITER = 10_000  # L-BFGS iteration cap per fit, a safety net: long-tailed 6,000 × 256 at λ=1e-8 needs 2,300
HISTORY = 50  # L-BFGS memory: 30-40 % fewer iterations than 20 on ill-conditioned (weak λ) fits
WHITEN_FLOOR = 0.1  # whitening treats a variance below this fraction of the mean one as this much (see _Whitened)
STALL = 1e-14  # float64 loss or step changes below this are rounding: the fit stalled (reported, not converged)


@dataclass(frozen=True)
class LogisticFit:
    """One L-BFGS solve. w: (d, C), b: (C,) float64; objective: f at (w, b); grad_norm: max-abs gradient of f there;
    grad_tol: the tolerance it had to meet (`grad_tolerance`); iterations: L-BFGS iterations taken; converged:
    grad_norm ≤ grad_tol (False: the iteration cap was hit or the line search stalled first)."""

    w: Tensor
    b: Tensor
    wd: float
    objective: float
    grad_norm: float
    grad_tol: float
    iterations: int
    converged: bool

    @property
    def params(self) -> tuple[Tensor, Tensor]:
        """(w, b), as `predict_logistic` and a warm start (`init=`) take them."""
        return self.w, self.b


@dataclass(frozen=True)
class ProbeResult:
    """test_pred: (Q,) int64 predictions of the refitted probe; wd: the chosen λ; val_top1: its class-balanced
    validation accuracy (%); val_by_wd: λ -> class-balanced validation accuracy (%) for every λ evaluated.

    Diagnostics: wd_grid, the λ actually evaluated (ascending: the given grid plus any extensions); at_edge, whether
    the chosen λ is still the smallest or largest of wd_grid (extension stopped at WD_LIMITS, so the best λ may lie
    beyond); iterations, grad_norm, grad_tol, converged and objective of the final refit on all training features;
    val_converged, whether every fit on the validation split converged too."""

    test_pred: Tensor
    wd: float
    val_top1: float
    val_by_wd: dict[float, float]
    wd_grid: tuple[float, ...]
    at_edge: bool
    iterations: int
    grad_norm: float
    grad_tol: float
    converged: bool
    objective: float
    val_converged: bool


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, num_classes: int, *, seed: int = 0,
                 wd_grid: Sequence[float] = WD_GRID, val_fraction: float = VAL_FRACTION, max_iter: int = MAX_ITER,
                 wd_limits: tuple[float, float] = WD_LIMITS, whiten: bool = True) -> ProbeResult:
    """Select λ on a seeded stratified validation split of (train_x (N, d), train_y (N,)), refit on all of it, predict
    test_x (Q, d). Test labels are never seen. Validation accuracy is class-balanced because the test split is.
    While the chosen λ is the smallest or largest evaluated, the grid grows a decade that way (within wd_limits); the
    refit starts from the chosen λ's solution on the fit split. max_iter caps each fit (reported, see ProbeResult);
    whiten: the coordinates L-BFGS runs in (`fit_logistic`)."""
    if not wd_grid or min(wd_grid) <= 0:
        raise ValueError(f"wd_grid must hold positive strengths, got {list(wd_grid)}")
    fit_idx, val_idx = stratified_split(train_y, val_fraction, seed)
    if val_idx.numel() == 0:
        raise ValueError("the validation split is empty: every class has fewer than two training images")
    x = train_x.to(torch.float64)  # once: every fit below runs in float64 (see the module docstring)
    search = _StrengthSearch(x[fit_idx], train_y[fit_idx], x[val_idx], train_y[val_idx], num_classes, max_iter,
                             whiten)
    search.run(wd_grid, wd_limits)
    wd, chosen = search.best()
    final = fit_logistic(x, train_y, num_classes, wd, max_iter, init=chosen.params, whiten=whiten)  # warm
    grid = tuple(sorted(search.val_by_wd))
    return ProbeResult(predict_logistic(final.params, test_x), wd, search.val_by_wd[wd], dict(search.val_by_wd), grid,
                       wd in (grid[0], grid[-1]), final.iterations, final.grad_norm, final.grad_tol, final.converged,
                       final.objective, all(f.converged for f in search.fits.values()))


class _StrengthSearch:
    """λ selection on one (fit, val) split; each fit is warm-started from the nearest λ already evaluated."""

    def __init__(self, fit_x: Tensor, fit_y: Tensor, val_x: Tensor, val_y: Tensor, num_classes: int,
                 max_iter: int, whiten: bool = True) -> None:
        self.fit_x, self.fit_y, self.val_x, self.val_y = fit_x, fit_y, val_x, val_y
        self.num_classes, self.max_iter, self.whiten = num_classes, max_iter, whiten
        self.fits: dict[float, LogisticFit] = {}
        self.val_by_wd: dict[float, float] = {}

    def run(self, wd_grid: Sequence[float], limits: tuple[float, float]) -> None:
        """Evaluate wd_grid strong to weak, then extend a decade at a time past whichever edge the chosen λ sits on,
        while the new λ stays within `limits`."""
        for wd in sorted(set(wd_grid), reverse=True):
            self.evaluate(wd, init=min(self.fits, default=None))
        while True:
            wd, _ = self.best()
            low, high = min(self.fits), max(self.fits)
            if wd == low and _decade(low, -1) >= limits[0] * (1 - 1e-9):
                self.evaluate(_decade(low, -1), init=low)
            elif wd == high and _decade(high, 1) <= limits[1] * (1 + 1e-9):
                self.evaluate(_decade(high, 1), init=high)
            else:
                return

    def evaluate(self, wd: float, init: float | None) -> None:
        """Fit λ=wd on the fit split (warm-started from the fit at λ=init) and score it on the validation split."""
        start = self.fits[init].params if init is not None else None
        fit = fit_logistic(self.fit_x, self.fit_y, self.num_classes, wd, self.max_iter, init=start,
                           whiten=self.whiten)
        self.fits[wd] = fit
        self.val_by_wd[wd] = balanced_accuracy(predict_logistic(fit.params, self.val_x), self.val_y, self.num_classes)

    def best(self) -> tuple[float, LogisticFit]:
        """The λ with the highest validation accuracy (ties: the strongest penalty) and its fit."""
        top = max(self.val_by_wd.values())
        wd = max(w for w, acc in self.val_by_wd.items() if acc == top)
        return wd, self.fits[wd]


def _decade(wd: float, step: int) -> float:
    """wd · 10^step, rounded to 12 significant digits so repeated steps land on the usual decimal floats."""
    return float(f"{wd * 10.0**step:.12g}")


def stratified_split(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(fit, val) index tensors: round(fraction · n_c) random images of each class c go to val (at least one when
    n_c ≥ 2, never the last one), the rest to fit. Seeded, independent of anything but the labels."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    cpu_labels = labels.cpu()
    perm = torch.randperm(cpu_labels.numel(), generator=torch.Generator().manual_seed(seed))
    grouped = perm[cpu_labels[perm].argsort(stable=True)]  # class by class, random order within each class
    counts = torch.bincount(cpu_labels)
    n_val = torch.round(fraction * counts).clamp(min=1).clamp(max=counts - 1).clamp(min=0)
    starts = counts.cumsum(0) - counts
    grouped_labels = cpu_labels[grouped]
    rank = torch.arange(grouped.numel()) - starts[grouped_labels]
    is_val = rank < n_val[grouped_labels]
    return grouped[~is_val].sort().values.to(labels.device), grouped[is_val].sort().values.to(labels.device)


def _objective(x: Tensor, onehot: Tensor, w: Tensor, b: Tensor, wd: float) -> tuple[Tensor, Tensor, Tensor]:
    logits = torch.addmm(b, x, w)
    lse = logits.logsumexp(dim=1)
    loss = (lse - (logits * onehot).sum(dim=1)).mean() + 0.5 * wd * w.square().sum()
    residual = (torch.exp(logits - lse[:, None]) - onehot) / x.shape[0]  # d mean CE / d logits
    return loss, torch.addmm(w, x.T, residual, alpha=1.0, beta=wd), residual.sum(dim=0)


def fit_logistic(x: Tensor, y: Tensor, num_classes: int, wd: float, max_iter: int = MAX_ITER, *,
                 gap_rtol: float = GAP_RTOL, init: tuple[Tensor, Tensor] | None = None,
                 whiten: bool = True) -> LogisticFit:
    """Minimise mean CE + wd/2 ‖W‖² over W (d, C), b (C,) for x (N, d), y (N,) by full-batch L-BFGS (strong Wolfe)
    in float64 on x's device, from `init` (a warm start) or zero, until the max-abs gradient is within
    `grad_tolerance` or max_iter iterations. L-BFGS runs in the whitened coordinates of `_Whitened`; whiten=False
    runs it in (W, b) themselves, kept to measure what whitening buys (results/perf/probe-solver). The objective,
    its gradient and the stopping rule are those of (W, b) either way."""
    if wd <= 0:
        raise ValueError(f"the penalty strength must be positive, got {wd}")
    problem = _Whitened(x, F.one_hot(y, num_classes).to(torch.float64), wd, whiten)
    v, c = problem.inner(*_start(x.shape[1], num_classes, x.device, init))
    opt = torch.optim.LBFGS([v, c], lr=1.0, history_size=HISTORY, tolerance_grad=0.0, tolerance_change=STALL,
                            max_iter=max_iter, max_eval=2 * max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        loss, grad_norm, v.grad, c.grad = problem.evaluate(v.detach(), c.detach())
        if grad_norm <= grad_tolerance(wd, loss.item(), gap_rtol):
            raise _Converged((v.detach().clone(), c.detach().clone()))  # wherever L-BFGS stands, even mid-search
        return loss

    with torch.autocast(device_type=x.device.type, enabled=False):
        try:
            opt.step(closure)
            point = v.detach(), c.detach()  # the cap, or a stalled line search, came first
        except _Converged as done:
            point = done.point
    w, b = problem.outer(*point)
    iterations = opt.state[v].get("n_iter", 0)
    loss, grad_norm = _value_and_grad_norm(problem.x, problem.onehot, w, b, wd)
    tol = grad_tolerance(wd, loss, gap_rtol)
    return LogisticFit(w, b, wd, loss, grad_norm, tol, iterations, grad_norm <= tol)


class _Converged(Exception):
    """Raised by the L-BFGS closure at the first point that meets the tolerance: point = (v, c) there."""

    def __init__(self, point: tuple[Tensor, Tensor]) -> None:
        super().__init__()
        self.point = point


class _Whitened:
    """The probe's objective in preconditioned coordinates, for L-BFGS: W = L⁻ᵀ V with L Lᵀ = Σ + (λ + a)·I and
    c = b + μW, so logits = (x − μ) L⁻ᵀ V + c. Σ is the feature covariance, μ the feature mean, a = WHITEN_FLOOR ·
    tr(Σ)/d a tenth of the mean variance.

    A change of variables only: every (V, c) is one (W, b), so the optimum, the objective value and the stopping
    rule (max-abs gradient in (W, b)) are unchanged; only the path L-BFGS takes is. In (W, b) the CE's curvature
    follows Σ, whose eigenvalues span four to five decades on trained features, against the penalty's λ, so at weak
    λ L-BFGS crawled along the flat directions. Whitening brings both near the identity and centring decouples the
    bias from W. The floor a stops it from blowing up directions of tiny variance: where the classes are separable
    (raw digits pixels) the CE is flat along those too, and full whitening made them the ill-conditioned ones
    (λ = 1e-8: 10,000 iterations without converging, against 341 unwhitened and 150 with the floor).
    """

    def __init__(self, x: Tensor, onehot: Tensor, wd: float, whiten: bool = True) -> None:
        self.x, self.onehot, self.wd = x.to(torch.float64), onehot, wd
        eye = torch.eye(x.shape[1], dtype=torch.float64, device=x.device)
        self.mean = self.x.mean(dim=0) if whiten else self.x.new_zeros(x.shape[1])
        self.centred = self.x - self.mean
        self.m = eye  # L⁻ᵀ, so W = m @ V; the identity when not whitening
        if whiten:
            cov = self.centred.T @ self.centred / max(self.x.shape[0], 1)
            floor = wd + WHITEN_FLOOR * cov.trace() / cov.shape[0]
            self.m = torch.linalg.solve_triangular(torch.linalg.cholesky(cov + floor * eye).T, eye, upper=True)

    def inner(self, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """(V, c) leaves of the point (W, b), for the optimiser."""
        v = torch.linalg.solve_triangular(self.m, w.detach(), upper=True)
        return v.requires_grad_(True), (b.detach() + self.mean @ w.detach()).requires_grad_(True)

    def outer(self, v: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """(W, b) of the point (V, c)."""
        w = self.m @ v
        return w, c - self.mean @ w

    def evaluate(self, v: Tensor, c: Tensor) -> tuple[Tensor, float, Tensor, Tensor]:
        """(objective, max-abs gradient in (W, b), gradient in V, gradient in c) at (V, c)."""
        w = self.m @ v
        # logits = centred · W + c: the closed form of (W, b) with the centred features, giving d f / d W at fixed c
        loss, grad_centred, grad_c = _objective(self.centred, self.onehot, w, c, self.wd)
        grad_w = grad_centred + torch.outer(self.mean, grad_c)  # d f / d W at fixed b (d f / d b = d f / d c)
        return loss, _max_abs(grad_w, grad_c), self.m.T @ grad_centred, grad_c


def grad_tolerance(wd: float, objective: float, gap_rtol: float = GAP_RTOL) -> float:
    """Max-abs gradient at which a fit at strength wd with this objective value counts as converged: GRAD_TOL, or
    less where the penalty is so weak that g²/(2 wd), the gap left along a direction only the penalty curves, could
    exceed gap_rtol · objective (see the module docstring)."""
    return min(GRAD_TOL, math.sqrt(2.0 * wd * gap_rtol * max(objective, 0.0)))


def _value_and_grad_norm(x: Tensor, onehot: Tensor, w: Tensor, b: Tensor, wd: float) -> tuple[float, float]:
    loss, grad_w, grad_b = _objective(x, onehot, w.detach(), b.detach(), wd)
    return loss.item(), _max_abs(grad_w, grad_b)


def _max_abs(grad_w: Tensor, grad_b: Tensor) -> float:
    """Max-abs entry of the gradient (grad_w, grad_b), what the stopping rule reads; inf when it is not finite."""
    grad_norm = max(grad_w.abs().max().item(), grad_b.abs().max().item())
    return grad_norm if math.isfinite(grad_norm) else math.inf


def _start(dim: int, num_classes: int, device: torch.device, init: tuple[Tensor, Tensor] | None) -> list[Tensor]:
    """Leaf float64 tensors (w (d, C), b (C,)) to optimise: copies of `init`, or zeros."""
    if init is None:
        init = (torch.zeros(dim, num_classes), torch.zeros(num_classes))
    return [t.detach().to(device=device, dtype=torch.float64, copy=True).requires_grad_(True) for t in init]


def predict_logistic(params: tuple[Tensor, Tensor], x: Tensor) -> Tensor:
    """(Q,) int64 argmax of the logits x @ W + b, in W's dtype (ties: the lowest class)."""
    w, b = params
    return torch.addmm(b, x.to(w.dtype), w).argmax(dim=1)


def balanced_accuracy(pred: Tensor, labels: Tensor, num_classes: int) -> float:
    """Mean over the classes present in `labels` of their accuracy, in percent."""
    correct = torch.bincount(labels, weights=(pred == labels).double(), minlength=num_classes)
    total = torch.bincount(labels, minlength=num_classes)
    present = total > 0
    return 100.0 * (correct[present] / total[present]).mean().item()
