"""`tempnet`: the spec's worked examples (docs/new-strategies.md §4), loop references from the equations (the
estimator and losses at given τ, and the network; values and gradients, float64), closed forms, the gradient flow,
and step-for-step agreement with a re-implementation of the authors' `iSogCLR_TempNet_Loss` and `TempGenerator`
(tests/strategies/reference_new_b.py). `authors_gaps` returns the largest relative differences, which README.md
quotes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tempbench.strategies import Clock, create_strategy
from tests.strategies.reference_new_b import (
    TempGeneratorAuthors,
    TempNetLossAuthors,
    temp_generator_loop,
    tempnet_image_text_loop,
    tempnet_views_loop,
)
from tests.strategies.test_crossref import drop_last_batches, pair_features, relative
from tests.strategies.test_reference import make_inputs

SPEC_A = [[1.0, 0.2, -0.3], [0.1, 1.0, 0.4], [-0.5, 0.3, 1.0]]
SPEC_B = [[0.9, -0.1, 0.2], [0.3, 0.8, -0.2], [-0.2, 0.5, 0.9]]
NETWORK_PARAMETERS = {"weight": "proj.weight", "bias": "proj.bias", "log_scale": "scaler",
                      "prototypes": "prototypes", "head_weight": "linear_1.weight", "head_bias": "linear_1.bias"}


def tempnet(pairing: str, n: int = 12, **hp):
    return create_strategy("tempnet", num_samples=n, pairing=pairing, **hp).double()


def value(x: torch.Tensor) -> float:
    return float(x.detach())


def stub_temperatures(s, taus: list[torch.Tensor]) -> None:
    """The networks replaced by fixed τ leaves, taus[clock.step] (the spec's "networks stubbed to fixed τ"); the
    prototype bookkeeping still runs."""
    real = s.anchor_temperatures

    def fixed(z1: torch.Tensor, z2: torch.Tensor, clock: Clock) -> tuple[torch.Tensor, dict]:
        return taus[clock.step], real(z1, z2, clock)[1]

    s.anchor_temperatures = fixed


def spec_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(SPEC_A, dtype=torch.float64), torch.tensor(SPEC_B, dtype=torch.float64)


def test_spec_worked_example_two_steps() -> None:
    """TN class run, ρ 0.5, γ 0.8: clip_loss, temp_loss and G (= B ∂temp_loss/∂τ) of epochs 0 and 1."""
    taus = [torch.tensor([[0.03, 0.04], [0.02, 0.01], [0.05, 0.025]], dtype=torch.float64).requires_grad_(),
            torch.tensor([[0.05, 0.02]] * 3, dtype=torch.float64).requires_grad_()]
    expected = [(-0.862693, -0.008167, [[-0.193147, -0.190764], [-0.193147, -0.193147], [-0.009061, -0.193147]]),
                (-0.613236, -0.145726, [[0.917935, -20.853037], [-0.179080, 2.492529], [-0.009061, -5.322800]])]
    s = tempnet("image_text", n=3, rho=0.5, gamma=0.8, feature_dim=3)
    stub_temperatures(s, taus)
    a, b = spec_inputs()
    for t, (clip, temp, grad) in enumerate(expected):
        clock = Clock(step=t, epoch=t, epochs=2, steps_per_epoch=1)
        out = s(a, b, torch.arange(3), clock)
        assert value(out.loss - out.logs["temp_loss"]) == pytest.approx(clip, abs=1e-6)
        assert value(out.logs["temp_loss"]) == pytest.approx(temp, abs=1e-6)
        (tau_grad,) = torch.autograd.grad(out.loss, taus[t])
        torch.testing.assert_close(3 * tau_grad, torch.tensor(grad, dtype=torch.float64), rtol=0, atol=1e-6)
        s.update(out, torch.arange(3), clock)


def test_spec_worked_example_network_alone() -> None:
    """d = 3, M = 2, eval mode, W = I, c = 0, P = [e1; e2], κ = log 0.01, head 1/0: τ(z_I)."""
    s = tempnet("image_text", n=3, feature_dim=3, num_prototypes=2).eval()
    net = s.networks["image"]
    with torch.no_grad():
        net.weight.copy_(torch.eye(3))
        net.bias.zero_()
        net.prototypes.copy_(torch.eye(2, 3))
        net.prototypes_ready.fill_(True)
    tau = net(F.normalize(spec_inputs()[0], dim=1), torch.zeros(0, 3, dtype=torch.float64), None)
    torch.testing.assert_close(tau, torch.tensor([0.027720, 0.027747, 0.027727], dtype=torch.float64), rtol=0,
                               atol=1e-6)


def test_spec_worked_example_views() -> None:
    """τ rows [.1, .2, .3 | .15, .25, .35], ρ = 0.4, first visit: surrogate and temp_loss."""
    s = tempnet("views", n=3, rho=0.4, feature_dim=3)
    stub_temperatures(s, [torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25, 0.35], dtype=torch.float64)])
    out = s(*spec_inputs(), torch.arange(3), Clock())
    assert value(out.loss - out.logs["temp_loss"]) == pytest.approx(-0.821517, abs=1e-6)
    assert value(out.logs["temp_loss"]) == pytest.approx(-0.094844, abs=1e-6)


LOOPS = {"image_text": tempnet_image_text_loop, "views": tempnet_views_loop}


@pytest.mark.parametrize("pairing", ["image_text", "views"])
@pytest.mark.parametrize("first_visit", ["sample", "batch", "none"])
def test_matches_loop_reference_over_steps(pairing: str, first_visit: str) -> None:
    """At stubbed per-anchor τ, for 6 steps of overlapping batches: surrogate and temp_loss values, their gradients
    in the features and in τ, and the moving averages u, against the loop reference (float64)."""
    n, batch, rho, gamma = 10, 4, 1.2, 0.7
    tau_min, tau_max = (0.005, 0.05) if pairing == "image_text" else (0.05, 1.0)
    gen = torch.Generator().manual_seed(21)
    shape = (batch, 2) if pairing == "image_text" else (2 * batch,)
    taus = [(tau_min + (tau_max - tau_min) * torch.rand(shape, generator=gen, dtype=torch.float64)).requires_grad_()
            for _ in range(6)]
    s = tempnet(pairing, n=n, rho=rho, gamma=gamma, first_visit=first_visit)
    stub_temperatures(s, taus)
    u: dict = {}
    for t in range(6):
        idx = torch.randperm(n, generator=gen)[:batch]
        a, b = make_inputs(batch, 5, seed=100 + t)
        out = s(a, b, idx, Clock(step=t))
        surrogate, temp, u_new, _ = LOOPS[pairing](a, b, idx.tolist(), u, taus[t], gamma, rho, first_visit)
        # Σ G τ mixes signs, so it can be small next to its terms: an absolute floor as well
        assert value(out.logs["temp_loss"]) == pytest.approx(value(temp), rel=1e-10, abs=1e-13)
        assert value(out.loss) == pytest.approx(value(surrogate + temp), rel=1e-10, abs=1e-13)
        ours = torch.cat([g.flatten() for g in torch.autograd.grad(out.loss, (a, b, taus[t]))])
        ref = torch.cat([g.flatten() for g in torch.autograd.grad(surrogate + temp, (a, b, taus[t]))])
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
        s.update(out, idx, Clock(step=t))
        u.update(u_new)
        keys = sorted(u)
        ours_u = [s.log_u[k[1], k[0]] if pairing == "image_text" else s.log_u[k] for k in keys]
        torch.testing.assert_close(torch.stack(ours_u).exp(), torch.tensor([u[k] for k in keys],
                                                                           dtype=torch.float64), rtol=1e-11, atol=0)
        torch.testing.assert_close(s.temperatures()[idx], taus[t].detach()[:batch], rtol=0, atol=0)


@pytest.mark.parametrize("width", [5, 3])
def test_network_matches_loop_reference(width: int) -> None:
    """τ and its gradient in every network parameter against the loop over hidden units and prototypes; an input
    narrower than D (width 3 < 5) uses W's first columns."""
    s = tempnet("image_text", feature_dim=5, num_prototypes=3).eval()
    net = s.networks["text"]
    with torch.no_grad():
        net.prototypes_ready.fill_(True)
        net.head_weight.copy_(torch.tensor([[0.7, -1.3, 2.0]]))
        net.head_bias.fill_(0.3)
        net.log_scale.fill_(math.log(0.2))
    z = F.normalize(make_inputs(4, width, seed=8)[0].detach(), dim=1)
    params = [getattr(net, name) for name in NETWORK_PARAMETERS]
    ours = net(z, torch.zeros(0, 5, dtype=torch.float64), None)
    weight, *rest = params
    ref = torch.stack(temp_generator_loop(z, weight[:, :width], *rest, 0.005, 0.05))
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=0)
    probe = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64)  # a generic cotangent
    for g_ours, g_ref in zip(torch.autograd.grad(ours @ probe, params), torch.autograd.grad(ref @ probe, params)):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("pairing", ["image_text", "views"])
def test_gradient_flow(pairing: str) -> None:
    """The encoder's gradient is the surrogate's alone (the networks' input is detached and τ enters the surrogate
    only inside detached weights); the networks' gradient is (1/B) Σ G ∂τ/∂θ (with dropout, in training mode)."""
    a, b = make_inputs(6, 7, seed=5)
    idx = torch.arange(6)
    s = tempnet(pairing)
    out = s(a, b, idx, Clock(step=3))
    params = list(s.parameters())
    g_all = torch.autograd.grad(out.loss, [a, b, *params], allow_unused=True)
    tau = out.tau if pairing == "image_text" else s.anchor_temperatures(F.normalize(a, dim=1), F.normalize(b, dim=1),
                                                                       Clock(step=3))[0].detach()
    surrogate, _, _, grad = LOOPS[pairing](a, b, idx.tolist(), {}, tau, s.config.gamma, s.config.rho)
    torch.testing.assert_close(torch.cat(g_all[:2]), torch.cat(torch.autograd.grad(surrogate, (a, b))), rtol=1e-10,
                               atol=1e-13)
    grad = torch.tensor([[grad[(0, i)], grad[(1, i)]] for i in range(6)] if pairing == "image_text" else grad,
                        dtype=torch.float64)
    tau_again, _ = s.anchor_temperatures(F.normalize(a, dim=1), F.normalize(b, dim=1), Clock(step=3))  # same masks
    expected = torch.autograd.grad((grad * tau_again).sum() / 6, params, allow_unused=True)
    for g_ours, g_ref in zip(g_all[2:], expected):
        assert relative(g_ours, g_ref) < 1e-10


@pytest.mark.parametrize("pairing", ["image_text", "views"])
def test_closed_forms(pairing: str) -> None:
    """Identical features: h ≡ 0 (views: s ≡ 1, p ≡ 1), so the surrogate is 0 with zero gradient and every G = ρ
    (KL = 0); image_text at B = 2 (one negative) gives G = ρ for any features at a first visit."""
    rho = 1.7
    ones = torch.ones(4, 5, dtype=torch.float64, requires_grad=True)
    s = tempnet(pairing, rho=rho).eval()  # no dropout: every anchor the same τ
    out = s(ones, ones, torch.arange(4), Clock())
    assert value(out.loss - out.logs["temp_loss"]) == pytest.approx(0.0, abs=1e-12)
    (grad,) = torch.autograd.grad(out.loss, ones)
    assert float(grad.abs().max()) < 1e-12
    assert float(out.logs["tau_grad_mean"]) == pytest.approx(rho, rel=1e-12)
    anchors = out.tau.sum() * (1 if pairing == "image_text" else 2)  # views: both views' anchors have the same τ
    assert value(out.logs["temp_loss"]) == pytest.approx(rho * value(anchors) / 4, rel=1e-12)
    if pairing == "image_text":  # views always have K = 2B − 2 >= 2 negatives
        a, b = make_inputs(2, 5, seed=9)
        out = tempnet(pairing, rho=rho)(a, b, torch.arange(2), Clock())
        assert float(out.logs["tau_grad_mean"]) == pytest.approx(rho, rel=1e-12)


def test_tau_gradient_is_the_derivative_of_the_objective() -> None:
    """At a first visit G^X_i = ∂/∂τ [τ log g^X_i(τ) + τρ] = ρ − KL: a central finite difference, per anchor."""
    rho, batch = 0.9, 5
    a, b = make_inputs(batch, 6, seed=13)
    tau = torch.tensor([[0.02, 0.03], [0.04, 0.015], [0.05, 0.01], [0.025, 0.035], [0.045, 0.02]],
                       dtype=torch.float64).requires_grad_()
    s = tempnet("image_text", n=batch, rho=rho)
    stub_temperatures(s, [tau])
    out = s(a, b, torch.arange(batch), Clock())
    (grad,) = torch.autograd.grad(out.loss, tau)
    z_img, z_txt = F.normalize(a.detach(), dim=1), F.normalize(b.detach(), dim=1)
    sim = z_img @ z_txt.T
    h = torch.stack([sim - sim.diagonal()[:, None], sim.T - sim.diagonal()[:, None]])  # (side, anchor, j)
    off = ~torch.eye(batch, dtype=torch.bool)

    def objective(t: float, side: int, i: int) -> float:
        return t * math.log(float(torch.exp(h[side, i][off[i]] / t).mean())) + t * rho

    for i in range(batch):
        for side in (0, 1):
            t, eps = value(tau[i, side]), 1e-7
            fd = (objective(t + eps, side, i) - objective(t - eps, side, i)) / (2 * eps)
            assert batch * float(grad[i, side]) == pytest.approx(fd, rel=1e-6, abs=1e-7)


def test_log_domain_where_the_authors_state_underflows() -> None:
    """The spec's pitfall: every h/τ ≈ −100 (b = 0 from the diagonal) makes the authors' s = Σ exp(h/τ) fall under
    their 1e-14 clamp, so their G is off by tens of nats; ours is ρ (all negatives equal: KL = 0)."""
    z_img = torch.eye(3, dtype=torch.float64)
    z_txt = torch.eye(3, dtype=torch.float64) * 0.5 + 0.5 * torch.ones(3, 3, dtype=torch.float64) / 3 ** 0.5
    tau = torch.full((3, 2), 0.005, dtype=torch.float64).requires_grad_()
    s = tempnet("image_text", n=3, rho=0.5)
    stub_temperatures(s, [tau])
    out = s(z_img, z_txt, torch.arange(3), Clock())
    assert torch.isfinite(out.saved["log_u"]).all() and float(out.saved["log_u"].max()) < -50
    assert float(out.logs["tau_grad_mean"]) == pytest.approx(0.5, abs=1e-9)
    theirs = TempNetLossAuthors(3, 0.8, 0.5, ConstantTau(0.005), ConstantTau(0.005))
    (_, temp), _, _ = theirs(F.normalize(z_img, dim=1), F.normalize(z_txt, dim=1), torch.arange(3), torch.arange(3), 0)
    assert abs(float(temp) / (2 * 0.005) - 0.5) > 10.0  # their G: log(1e-14/2) + ρ − ... instead of ρ


class ConstantTau(torch.nn.Module):
    """A stand-in network: the same τ for every input."""

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), self.tau, dtype=x.dtype)


def authors_gaps(epochs: int = 3, rho: float = 2.0, gamma: float = 0.8, lr: float = 1e-3,
                 noise: float = 1.0) -> dict[str, float]:
    """Ours (image_text, eval mode: no dropout; D = d; M <= B) against the authors' loss and networks from the same
    parameters and prototypes, both networks trained by Adam: max relative differences over all steps, float64."""
    n, batch, dim, protos = 16, 8, 6, 5
    ours = tempnet("image_text", n=n, rho=rho, gamma=gamma, feature_dim=dim, num_prototypes=protos).eval()
    gens = [TempGeneratorAuthors(ours.networks[k], 0.005, 0.05).eval() for k in ("image", "text")]
    theirs = TempNetLossAuthors(n, gamma, rho, *gens)
    opts = [torch.optim.Adam(ours.parameters(), lr=lr), torch.optim.Adam(theirs.parameters(), lr=lr)]
    keys = ["loss", "clip_loss", "temp_loss", "tau", "feature_grad", "network_grad", "u", "network"]
    gaps = dict.fromkeys(keys, 0.0)
    for t, (epoch, idx) in enumerate(drop_last_batches(n, batch, epochs, seed=3)):
        image, text = pair_features(batch, dim, seed=50 + t, dtype=torch.float64, noise=noise)
        image2, text2 = image.detach().clone().requires_grad_(), text.detach().clone().requires_grad_()
        z_img, z_txt = F.normalize(image2, dim=1), F.normalize(text2, dim=1)
        if t == 0:  # theirs: before training, from one batch, cross-modal (clip.py)
            gens[0]._init_prototypes(z_txt[:protos].detach())
            gens[1]._init_prototypes(z_img[:protos].detach())
        clock = Clock(step=t, epoch=epoch, epochs=epochs, steps_per_epoch=n // batch)
        for opt in opts:
            opt.zero_grad()
        out = ours(image, text, idx, clock)
        (clip, temp), tau_img, tau_txt = theirs(z_img, z_txt, idx, idx, epoch)
        out.loss.backward()
        (clip + temp).backward()
        pairs = {"loss": (out.loss, clip + temp), "clip_loss": (out.loss - out.logs["temp_loss"], clip),
                 "temp_loss": (out.logs["temp_loss"], temp), "tau": (out.tau, torch.stack([tau_img, tau_txt], 1)),
                 "feature_grad": (torch.cat([image.grad, text.grad]), torch.cat([image2.grad, text2.grad])),
                 "network_grad": network_tensors(ours, theirs, grad=True)}
        for key, (x, y) in pairs.items():
            gaps[key] = max(gaps[key], relative(x.detach(), y.detach()))
        for opt in opts:
            opt.step()
        ours.update(out, idx, clock)
        u_img, u_txt = theirs.plain_u()
        gaps["u"] = max(gaps["u"], relative(ours.log_u[idx].exp(), torch.stack([u_img[idx], u_txt[idx]], 1)
                                            / (batch - 1)))
        gaps["network"] = max(gaps["network"], relative(*network_tensors(ours, theirs)))
    return gaps


def network_tensors(ours, theirs, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Every network parameter (or its gradient) of ours and theirs, flattened in the same order."""
    def pick(p: torch.Tensor) -> torch.Tensor:
        return (p.grad if grad else p).detach().flatten()

    ours_t, theirs_t = [], []
    for side, gen in (("image", theirs.image_temp_gen), ("text", theirs.text_temp_gen)):
        for mine, name in NETWORK_PARAMETERS.items():
            ours_t.append(pick(getattr(ours.networks[side], mine)))
            theirs_t.append(pick(gen.get_parameter(name)))
    return torch.cat(ours_t), torch.cat(theirs_t)


def test_matches_authors_code_step_for_step() -> None:
    gaps = authors_gaps()
    assert all(v < 1e-12 for v in gaps.values()), gaps


def test_prototypes_start_as_the_first_batch_cross_modal_features() -> None:
    """Before any step the first k prototypes are N(0, 1); the first step uses the batch's other-modality features
    (views: view 2 first) and `update` writes them; rows beyond k and later steps are left alone."""
    a, b = make_inputs(4, 6, seed=2)
    s = tempnet("image_text", feature_dim=6, num_prototypes=6)
    before = s.networks["image"].prototypes.detach().clone()
    out = s(a, b, torch.arange(4), Clock())
    s.update(out, torch.arange(4), Clock())
    torch.testing.assert_close(s.networks["image"].prototypes[:4], F.normalize(b.detach(), dim=1))
    torch.testing.assert_close(s.networks["text"].prototypes[:4], F.normalize(a.detach(), dim=1))
    torch.testing.assert_close(s.networks["image"].prototypes[4:], before[4:], rtol=0, atol=0)
    out = s(b, a, torch.arange(4), Clock(step=1))
    s.update(out, torch.arange(4), Clock(step=1))
    torch.testing.assert_close(s.networks["image"].prototypes[:4], F.normalize(b.detach(), dim=1))
    v = tempnet("views", feature_dim=6, num_prototypes=6)
    v.update(v(a, b, torch.arange(4), Clock()), torch.arange(4), Clock())
    torch.testing.assert_close(v.networks["views"].prototypes, F.normalize(torch.cat([b, a]).detach(), dim=1)[:6])


def test_temperatures_and_dropout() -> None:
    """Unvisited pairs report (τ_min + τ_max)/2; visited ones the τ used, dropout included. Masks depend on
    (net_seed, step) only: the same step repeats them, another step or seed does not, eval mode has none."""
    a, b = make_inputs(4, 6, seed=6)
    idx = torch.tensor([1, 5, 2, 7])
    s = tempnet("image_text")
    torch.testing.assert_close(s.temperatures(), torch.full((12, 2), 0.0275, dtype=torch.float64))
    out = s(a, b, idx, Clock(step=2))
    s.update(out, idx, Clock(step=2))
    torch.testing.assert_close(s.temperatures()[idx], out.tau, rtol=0, atol=0)
    fresh = tempnet("image_text")
    same = fresh(a, b, idx, Clock(step=2)).tau
    other_step = fresh(a, b, idx, Clock(step=3)).tau
    other_seed = tempnet("image_text", net_seed=1)(a, b, idx, Clock(step=2)).tau
    no_dropout = tempnet("image_text", dropout=0.0)(a, b, idx, Clock(step=2)).tau
    assert torch.equal(same, out.tau) and not torch.equal(same, other_step) and not torch.equal(same, other_seed)
    torch.testing.assert_close(fresh.eval()(a, b, idx, Clock(step=2)).tau, no_dropout, rtol=0, atol=0)
    assert not torch.equal(no_dropout, same)


def test_feature_width_above_feature_dim_is_refused() -> None:
    a, b = make_inputs(4, 9, seed=1)
    with pytest.raises(ValueError, match="feature_dim"):
        tempnet("views", feature_dim=8)(a, b, torch.arange(4), Clock())
