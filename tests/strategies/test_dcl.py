"""`dcl` and `dclw` (new-strategies.md §2) against loop references of the decoupled loss (values and gradients), the
spec's worked examples and closed forms, a re-implementation of lightly's `DCLLoss` / `DCLWLoss` step for step
(lightly itself when it is installed), and the cross-check with `sogclr` at γ = 1."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from tempbench.strategies import Clock, create_strategy
from tempbench.strategies.dcl import vmf_weights
from tests.strategies import reference_new_a as refa
from tests.strategies.test_reference import assert_same, make_inputs

PAIRINGS = ["views", "image_text"]
LOOPS = {"views": refa.dcl_views, "image_text": refa.dcl_image_text}
GRID = [(b, d, tau) for b in (2, 3, 6) for d in (3, 16) for tau in (0.01, 0.1, 0.5)]


def dcl(name: str, pairing: str, num_samples: int = 10, **hp):
    return create_strategy(name, num_samples=num_samples, pairing=pairing, **hp).double()


@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize(("batch", "dim", "tau"), GRID)
def test_dcl_matches_loop_reference(pairing: str, batch: int, dim: int, tau: float) -> None:
    a, b = make_inputs(batch, dim, seed=batch * 31 + dim)
    out = dcl("dcl", pairing, tau=tau)(a, b, torch.arange(batch), Clock())
    assert_same(out.loss, LOOPS[pairing](a, b, tau), a, b)


@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize("sigma", [0.1, 0.5, 2.0])
@pytest.mark.parametrize(("batch", "dim", "tau"), GRID)
def test_dclw_matches_loop_reference_with_detached_weights(pairing: str, sigma: float, batch: int, dim: int,
                                                          tau: float) -> None:
    """The loop's weights are plain floats, so matching its gradient shows no gradient flows through w."""
    a, b = make_inputs(batch, dim, seed=batch * 37 + dim)
    out = dcl("dclw", pairing, tau=tau, sigma=sigma)(a, b, torch.arange(batch), Clock())
    assert_same(out.loss, LOOPS[pairing](a, b, tau, sigma), a, b)


@pytest.mark.parametrize(("name", "pairing", "tau", "expected"), [
    ("dcl", "views", 0.1, -2.976690), ("dclw", "views", 0.1, -2.885899),
    ("dcl", "views", 0.5, 0.075838), ("dclw", "views", 0.5, 0.093996),
    ("dcl", "image_text", 0.1, -4.262584), ("dclw", "image_text", 0.1, -4.171793),
])
def test_worked_examples(name: str, pairing: str, tau: float, expected: float) -> None:
    a, b = refa.shared_input()
    assert dcl(name, pairing, tau=tau)(a, b, torch.arange(3), Clock()).loss.item() == pytest.approx(expected, abs=1e-6)
    a32, b32 = refa.shared_input(torch.float32)
    loss32 = create_strategy(name, num_samples=10, pairing=pairing, tau=tau)(a32, b32, torch.arange(3), Clock()).loss
    assert loss32.item() == pytest.approx(expected, rel=1e-5)


def test_worked_example_weights() -> None:
    a, b = refa.shared_input()
    z1, z2 = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    w = vmf_weights((z1 * z2).sum(dim=1), 0.5)
    torch.testing.assert_close(w, torch.tensor([1.056519, 1.131906, 0.811575], dtype=torch.float64), atol=1e-6, rtol=0)
    assert w.sum().item() == pytest.approx(3.0)  # they average 1


def test_weights_go_negative_as_in_the_reference() -> None:
    """B = 128, σ = 0.5: one positive at s⁺ = 1 and the rest at −1 give 2 − 128 e⁴/(e⁴ + 127) ≈ −36.5."""
    positive = torch.full((128,), -1.0, dtype=torch.float64)
    positive[0] = 1.0
    w = vmf_weights(positive, 0.5)
    assert w[0].item() == pytest.approx(2 - 128 * math.exp(4) / (math.exp(4) + 127), rel=1e-12)
    assert w[0].item() == pytest.approx(-36.5, abs=0.05)


@pytest.mark.parametrize("name", ["dcl", "dclw"])
@pytest.mark.parametrize(("pairing", "negatives"), [("views", lambda b: 2 * b - 2), ("image_text", lambda b: b - 1)])
def test_identical_features_closed_form(name: str, pairing: str, negatives) -> None:
    """Every similarity is 1 (w ≡ 1 too): −1/τ + log(K e^{1/τ}) = log K."""
    batch = 5
    x = torch.ones(batch, 4, dtype=torch.float64)
    out = dcl(name, pairing, tau=0.2)(x, x.clone(), torch.arange(batch), Clock())
    assert out.loss.item() == pytest.approx(math.log(negatives(batch)), rel=1e-12)


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_sogclr_at_gamma_one_has_two_tau_times_the_gradient(pairing: str) -> None:
    """`sogclr`'s surrogate sums the two views (sides) where DCL averages them: at γ = 1 its gradient is 2τ ∇L."""
    a, b = make_inputs(5, 8, seed=9)
    tau = 0.3
    ours = dcl("dcl", pairing, tau=tau)(a, b, torch.arange(5), Clock()).loss
    sog = create_strategy("sogclr", num_samples=10, pairing=pairing, tau=tau, gamma=1.0).double()
    g_sog = torch.cat(torch.autograd.grad(sog(a, b, torch.arange(5), Clock()).loss, (a, b)))
    torch.testing.assert_close(g_sog, 2 * tau * torch.cat(torch.autograd.grad(ours, (a, b))), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_temperatures_report_the_constant_tau(pairing: str) -> None:
    s = create_strategy("dclw", num_samples=6, pairing=pairing, tau=0.07)
    a, b = make_inputs(3, 4, seed=0)
    out = s(a.float(), b.float(), torch.arange(3), Clock())
    s.update(out, torch.arange(3), Clock())
    torch.testing.assert_close(s.temperatures(), torch.full(s.tau_shape(6), 0.07))
    assert s.tau_bounds() == (0.07, 0.07) and "weight_min" in out.logs
    assert not list(s.parameters()) and not s.per_sample_state


def test_image_text_defaults_are_at_clip_scale() -> None:
    assert create_strategy("dcl", num_samples=4).config.tau == 0.1
    assert create_strategy("dcl", num_samples=4, pairing="image_text").config.tau == 0.01
    assert create_strategy("dclw", num_samples=4, pairing="image_text").config.sigma == 0.5


def lightly_gaps(name: str, tau: float, sigma: float, steps: int = 6) -> dict[str, float]:
    """`dcl`/`dclw` (views) and `LightlyDCL` on the same free embeddings, each trained by its own SGD in float64:
    the largest relative differences (max |ours − theirs| / max |theirs|) of the loss and the embeddings' gradients
    over `steps` steps."""
    gen = torch.Generator().manual_seed(6)
    view1 = torch.randn(8, 16, generator=gen, dtype=torch.float64)
    view2 = view1 + 0.5 * torch.randn(8, 16, generator=gen, dtype=torch.float64)
    ours = dcl(name, "views", tau=tau, **({"sigma": sigma} if name == "dclw" else {}))
    lightly = refa.LightlyDCL(tau, sigma if name == "dclw" else None)
    emb, emb_ly = [view1.clone().requires_grad_(), view2.clone().requires_grad_()], [
        view1.clone().requires_grad_(), view2.clone().requires_grad_()]
    opt, opt_ly = torch.optim.SGD(emb, lr=0.5), torch.optim.SGD(emb_ly, lr=0.5)
    gaps = {"loss": 0.0, "grad": 0.0}
    for t in range(steps):
        loss, loss_ly = ours(*emb, torch.arange(8), Clock(step=t)).loss, lightly(*emb_ly)
        gaps["loss"] = max(gaps["loss"], abs((loss - loss_ly).item()) / abs(loss_ly.item()))
        opt.zero_grad()
        opt_ly.zero_grad()
        loss.backward()
        loss_ly.backward()
        g, g_ly = torch.cat([e.grad for e in emb]), torch.cat([e.grad for e in emb_ly])
        gaps["grad"] = max(gaps["grad"], ((g - g_ly).abs().max() / g_ly.abs().max()).item())
        opt.step()
        opt_ly.step()
    return gaps


@pytest.mark.parametrize(("name", "tau", "sigma"), [("dcl", 0.1, 0.5), ("dcl", 0.5, 0.5), ("dclw", 0.1, 0.5),
                                                    ("dclw", 0.05, 0.2)])
def test_matches_lightly_step_for_step(name: str, tau: float, sigma: float) -> None:
    gaps = lightly_gaps(name, tau, sigma)
    assert gaps["loss"] < 1e-12 and gaps["grad"] < 1e-12, gaps


def test_lightly_before_1_5_21_summed_two_logsumexps() -> None:
    """lightly <= 1.5.20 computed log Σ_same-view + log Σ_other-view (fixed in PR #1827): −1.223864 on the shared
    input at τ = 0.1, and 2 log(B − 1) + 1/τ instead of log(2B − 2) on identical features (the second log carries a
    second e^{1/τ}). This project follows >= 1.5.21."""
    a, b = refa.shared_input()
    assert refa.LightlyDCL(0.1, separate_logsumexp=True)(a, b).item() == pytest.approx(-1.223864, abs=1e-6)
    assert refa.LightlyDCL(0.1)(a, b).item() == pytest.approx(-2.976690, abs=1e-6)
    x = torch.ones(5, 4, dtype=torch.float64)
    assert refa.LightlyDCL(0.1, separate_logsumexp=True)(x, x).item() == pytest.approx(2 * math.log(4) + 10)


@pytest.mark.parametrize("name", ["dcl", "dclw"])
def test_matches_installed_lightly(name: str) -> None:
    dcl_loss = pytest.importorskip("lightly.loss.dcl_loss")
    a, b = make_inputs(6, 8, seed=12)
    ref = dcl_loss.DCLLoss(temperature=0.1) if name == "dcl" else dcl_loss.DCLWLoss(temperature=0.1, sigma=0.5)
    x = torch.ones(4, 3, dtype=torch.float64)
    if abs(dcl_loss.DCLLoss(temperature=0.1)(x, x).item() - math.log(6)) > 1e-9:
        pytest.skip("lightly < 1.5.21: two logsumexps (test_lightly_before_1_5_21_summed_two_logsumexps)")
    ours = dcl(name, "views", tau=0.1)(a, b, torch.arange(6), Clock()).loss
    # lightly's weights are `torch.tensor(tensor)`, a copy that warns
    with pytest.warns(UserWarning) if name == "dclw" else contextlib.nullcontext():
        theirs = ref(a, b)
    assert_same(ours, theirs, a, b)
