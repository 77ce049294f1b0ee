"""`siglip` (new-strategies.md §1) against a loop reference of the pairwise sigmoid loss (values and gradients w.r.t.
the features, t′ and b), the spec's worked examples, the closed form, and a re-implementation of open_clip's
`SigLipLoss` and its clamp, step for step; open_clip itself when it is installed."""

from __future__ import annotations

import math

import pytest
import torch

from tempbench.strategies import Clock, create_strategy
from tests.strategies import reference_new_a as refa
from tests.strategies.test_reference import make_inputs

PAIRINGS = ["views", "image_text"]
LOOPS = {"views": refa.siglip_views, "image_text": refa.siglip_image_text}


def siglip(pairing: str, t: float, bias: float, num_samples: int = 10):
    """A float64 `siglip` whose t′ = log t and b are exactly `t` and `bias` (not the float32-rounded init)."""
    s = create_strategy("siglip", num_samples=num_samples, pairing=pairing).double()
    with torch.no_grad():
        s.log_inv_tau.fill_(math.log(t))
        s.bias.fill_(bias)
    return s


def all_grads(loss: torch.Tensor, *leaves: torch.Tensor) -> torch.Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, leaves)])


@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize(("t", "bias"), [(10.0, -10.0), (5.0, -2.0), (1.0, 0.0), (100.0, -50.0)])
@pytest.mark.parametrize(("batch", "dim"), [(2, 3), (3, 16), (6, 8)])
def test_matches_loop_reference_values_and_gradients(pairing: str, t: float, bias: float, batch: int, dim: int) -> None:
    a, b = make_inputs(batch, dim, seed=batch * 7 + dim)
    s = siglip(pairing, t, bias)
    out = s(a, b, torch.arange(batch), Clock())
    theta = torch.tensor(math.log(t), dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    expected = LOOPS[pairing](a, b, torch.exp(theta), beta)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-12)
    ours = all_grads(out.loss, a, b, s.log_inv_tau, s.bias)
    theirs = all_grads(expected, a, b, theta, beta)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("pairing", "t", "bias", "expected"), [
    ("image_text", 10.0, -10.0, 1.713968), ("views", 10.0, -10.0, 1.716940),
    ("image_text", 5.0, -2.0, 1.216597), ("views", 5.0, -2.0, 1.874164),
])
def test_worked_examples(pairing: str, t: float, bias: float, expected: float) -> None:
    a, b = refa.shared_input()
    loss = siglip(pairing, t, bias)(a, b, torch.arange(3), Clock()).loss
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # float32 (t′ rounded to float32 too) within 1e-5 relative
    s32 = create_strategy("siglip", num_samples=10, pairing=pairing, tau_init=1 / t, bias_init=bias)
    a32, b32 = refa.shared_input(torch.float32)
    assert s32(a32, b32, torch.arange(3), Clock()).loss.item() == pytest.approx(expected, rel=1e-5)


def test_defaults_are_open_clips_siglip_init() -> None:
    for pairing in PAIRINGS:
        s = create_strategy("siglip", num_samples=4, pairing=pairing)
        assert s.log_inv_tau.item() == pytest.approx(math.log(10.0)) and s.bias.item() == -10.0
        assert s.param_group() == {"lr": 0.01, "weight_decay": 0.0}
        assert {n for n, _ in s.named_parameters()} == {"log_inv_tau", "bias"}
        assert s.tau_bounds() == (0.01, 1.0)
        assert torch.all(s.temperatures() == 0.1) and s.temperatures().shape == s.tau_shape(4)


@pytest.mark.parametrize(("pairing", "pairs"), [("image_text", lambda b: b), ("views", lambda b: 2 * b - 1)])
def test_identical_features_with_t_plus_b_zero_give_log_2_per_pair(pairing: str, pairs) -> None:
    """Every logit is t·1 + b = 0: each of the B (2B − 1) terms per anchor row is log 2, summed over the row and
    averaged over the rows."""
    batch = 5
    x = torch.ones(batch, 4, dtype=torch.float64)
    s = siglip(pairing, 7.0, -7.0)
    out = s(x, x.clone(), torch.arange(batch), Clock())
    assert out.loss.item() == pytest.approx(pairs(batch) * math.log(2.0), rel=1e-12)


def test_views_loss_is_symmetric_in_the_two_views() -> None:
    a, b = make_inputs(4, 6, seed=11)
    s = siglip("views", 10.0, -10.0)
    assert s(a, b, torch.arange(4), Clock()).loss.item() == pytest.approx(
        s(b, a, torch.arange(4), Clock()).loss.item(), rel=1e-12)


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_update_clamps_t_prime_not_the_bias_and_reports_tau(pairing: str) -> None:
    s = create_strategy("siglip", num_samples=6, pairing=pairing)
    a, b = make_inputs(3, 4, seed=2)
    for overshoot, tau in [(math.log(1000.0), 0.01), (-0.5, 1.0)]:
        with torch.no_grad():
            s.log_inv_tau.fill_(overshoot)  # as if an optimiser step overshot
            s.bias.fill_(-250.0)
        out = s(a.float(), b.float(), torch.arange(3), Clock())
        assert float(out.logs["bias"]) == -250.0
        s.update(out, torch.arange(3), Clock())
        assert float(torch.exp(-s.log_inv_tau.detach())) == pytest.approx(tau, rel=1e-6)
        assert s.bias.item() == -250.0
        torch.testing.assert_close(s.temperatures(), torch.full(s.tau_shape(6), tau), rtol=1e-6, atol=0)


def open_clip_gaps(steps: int = 8, tau_init: float = 0.0105, lr: float = 0.5) -> dict[str, float]:
    """`siglip` (image_text) and `OpenCLIPSigLIP` trained side by side with SGD (features, t′ and b) in float64:
    over `steps` steps, the largest relative differences of the loss and of the gradients (features, t′, b: max
    |ours − theirs| / max |theirs|), and the largest absolute difference of t′ and b after the clamp. `clamped`
    counts the steps at which the clamp moved t′."""
    gen = torch.Generator().manual_seed(4)
    image = torch.randn(6, 8, generator=gen, dtype=torch.float64)
    text = image + 0.4 * torch.randn(6, 8, generator=gen, dtype=torch.float64)
    ours = create_strategy("siglip", num_samples=6, pairing="image_text", tau_init=tau_init).double()
    oc = refa.OpenCLIPSigLIP(ours.log_inv_tau.item(), ours.bias.item())
    emb = [image.clone().requires_grad_(), text.clone().requires_grad_()]
    emb_oc = [image.clone().requires_grad_(), text.clone().requires_grad_()]
    opt = torch.optim.SGD([*emb, *ours.parameters()], lr=lr)
    opt_oc = torch.optim.SGD([*emb_oc, oc.logit_scale, oc.logit_bias], lr=lr)
    gaps = {"loss": 0.0, "grad": 0.0, "params": 0.0, "clamped": 0}
    for t in range(steps):
        out = ours(*emb, torch.arange(6), Clock(step=t))
        loss_oc = oc.loss(*emb_oc)
        gaps["loss"] = max(gaps["loss"], abs((out.loss - loss_oc).item()) / abs(loss_oc.item()))
        opt.zero_grad()
        opt_oc.zero_grad()
        out.loss.backward()
        loss_oc.backward()
        g_ours = torch.cat([p.grad.flatten() for p in [*emb, ours.log_inv_tau, ours.bias]])
        g_oc = torch.cat([p.grad.flatten() for p in [*emb_oc, oc.logit_scale, oc.logit_bias]])
        gaps["grad"] = max(gaps["grad"], float((g_ours - g_oc).abs().max() / g_oc.abs().max()))
        opt.step()
        opt_oc.step()
        before = ours.log_inv_tau.item()
        ours.update(out, torch.arange(6), Clock(step=t))
        oc.clamp()
        gaps["clamped"] += ours.log_inv_tau.item() != before
        params = torch.stack([ours.log_inv_tau - oc.logit_scale, ours.bias - oc.logit_bias]).detach()
        gaps["params"] = max(gaps["params"], float(params.abs().max()))
    return gaps


@pytest.mark.parametrize("tau_init", [0.0105, 0.5, 1.0])
def test_matches_open_clip_siglip_loss_step_for_step(tau_init: float) -> None:
    """tau_init 0.0105 (t ≈ 95) runs into the upper clamp t <= 100; 1.0 (t′ = 0) sits on the lower one."""
    gaps = open_clip_gaps(tau_init=tau_init)
    assert gaps["loss"] < 1e-12 and gaps["grad"] < 1e-12 and gaps["params"] < 1e-14, gaps
    if tau_init == 0.0105:
        assert gaps["clamped"] > 0


def test_matches_installed_open_clip() -> None:
    open_clip_loss = pytest.importorskip("open_clip.loss")
    a, b = make_inputs(5, 8, seed=3)
    s = siglip("image_text", 10.0, -10.0)
    out = s(a, b, torch.arange(5), Clock())
    zi, zt = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)
    theirs = open_clip_loss.SigLipLoss()(zi, zt, torch.exp(s.log_inv_tau), s.bias)
    assert out.loss.item() == pytest.approx(theirs.item(), rel=1e-12)
    torch.testing.assert_close(all_grads(out.loss, a, b, s.log_inv_tau, s.bias),
                               all_grads(theirs, a, b, s.log_inv_tau, s.bias), rtol=1e-9, atol=1e-12)
