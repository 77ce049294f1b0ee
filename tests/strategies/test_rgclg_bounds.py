"""`rgclg`: τ = exp(−θ) driven up to τ_max stops exactly there, i.e. θ stops at its *lower* clamp log(1/τ_max)
(strategies/README.md, `rgclg`). The other tests only ever push τ down, so a shifted lower clamp went unnoticed."""

from __future__ import annotations

import math

import pytest
import torch

from tempbench.strategies import Clock, create_strategy


def flipped_pairs(batch: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """z_I = e_i, z_T = −e_i: S = −I, so each anchor's one negative beats its positive by h = +1."""
    eye = torch.eye(batch, 4, dtype=dtype)
    return eye, -eye


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau_max", [1.0, 0.5, 0.2])
def test_tau_rises_to_tau_max_and_stops_exactly_there(tau_max: float, dtype: torch.dtype) -> None:
    """B = 2, γ = 1, ρ = 0 on flipped pairs: u = g = e^{1/τ}, p = 1, Ĥ = 1 on every anchor and M = 1/τ, so
    FastCLIP's θ-gradient is 2 − τ(ρ + 1/τ) = 1 − τρ = 1 > 0 at every step: Adam lowers θ by about `tau_lr` per
    step until the clamp holds it at log(1/τ_max), where it must stay, bit for bit, while the gradient keeps
    pushing."""
    s = create_strategy("rgclg", num_samples=2, pairing="image_text", tau_init=0.05, tau_max=tau_max, rho=0.0,
                        tau_lr=0.25, gamma=1.0, gamma_schedule="constant").to(dtype)
    a, b = flipped_pairs(2, dtype)
    idx = torch.arange(2)
    bound = torch.tensor(math.log(1.0 / tau_max), dtype=dtype)  # the clamp, in θ's dtype
    thetas = []
    for t in range(30):
        out = s(a, b, idx, Clock(step=t))
        assert float(out.logs["theta_grad"]) == pytest.approx(1.0, rel=1e-5)
        s.update(out, idx, Clock(step=t))
        thetas.append(s.log_inv_tau.clone())
    thetas = torch.stack(thetas)
    at_bound = thetas == bound
    first = int(at_bound.int().argmax())
    assert at_bound[first:].all() and first <= 15, thetas  # reached, then held for the remaining steps
    assert torch.all(thetas[:first] > bound) and torch.all(thetas[:first].diff() < 0)  # τ rose to it from below
    temps = s.temperatures()
    assert temps.shape == (2, 2) and torch.equal(temps, torch.exp(-bound).expand(2, 2))
    torch.testing.assert_close(temps, torch.full((2, 2), tau_max, dtype=dtype))
    assert s.tau_bounds()[1] == tau_max
