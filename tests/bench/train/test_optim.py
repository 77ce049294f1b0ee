"""Optimisation: LARS against hand-computed steps and SGD, parameter groups, the warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tempbench.encoders import create_encoder
from tempbench.strategies import Clock, create_strategy
from tempbench.train.optim import LARS, WarmupCosine, build_optimizer, build_scheduler, scaled_lr


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def tiny_model() -> nn.Module:
    return create_encoder("small_cnn", in_channels=1, image_size=8, projector_hidden=16, projector_out=8)


def take_step(opt: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt.step()


# ---- LARS ---------------------------------------------------------------------------------------------------------
def test_lars_step_matches_the_trust_ratio_formula() -> None:
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ‖w‖ = 5
    g = torch.tensor([[0.6, 0.8]])  # ‖g‖ = 1
    lr, wd, eta = 0.5, 0.1, 0.01
    take_step(LARS([w], lr=lr, momentum=0.9, weight_decay=wd, trust_coefficient=eta), [w], [g])
    trust = eta * 5.0 / (1.0 + wd * 5.0)  # η‖w‖ / (‖g‖ + wd‖w‖) = 1/30
    expected = torch.tensor([[3.0, 4.0]]) - lr * trust * (g + wd * torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(w.detach(), expected)


def test_lars_keeps_momentum_of_the_scaled_update() -> None:
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))
    g = torch.tensor([[0.6, 0.8]])
    opt = LARS([w], lr=0.5, momentum=0.9, weight_decay=0.0, trust_coefficient=0.01)
    take_step(opt, [w], [g])
    v1 = 0.01 * 5.0 * g  # first step: v = trust·g
    w1 = torch.tensor([[3.0, 4.0]]) - 0.5 * v1
    take_step(opt, [w], [g])
    v2 = 0.9 * v1 + 0.01 * w1.norm() / g.norm() * g
    torch.testing.assert_close(w.detach(), w1 - 0.5 * v2)


def test_lars_falls_back_to_sgd_for_zero_weights() -> None:
    w = nn.Parameter(torch.zeros(2, 2))
    g = torch.ones(2, 2)
    take_step(LARS([w], lr=0.1, momentum=0.9, weight_decay=0.1), [w], [g])
    torch.testing.assert_close(w.detach(), -0.1 * g)


def test_lars_false_group_is_plain_sgd_even_with_a_changing_lr() -> None:
    torch.manual_seed(1)
    a = [nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(3))]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    lars = LARS(a, lr=0.2, momentum=0.9, weight_decay=1e-2, lars=False)
    sgd = torch.optim.SGD(b, lr=0.2, momentum=0.9, weight_decay=1e-2)
    for step in range(5):
        grads = [torch.randn_like(p) for p in a]
        for opt in (lars, sgd):
            opt.param_groups[0]["lr"] = 0.2 / (step + 1)
        take_step(lars, a, grads)
        take_step(sgd, b, grads)
    for pa, pb in zip(a, b, strict=True):
        torch.testing.assert_close(pa, pb)


def test_lars_skips_parameters_without_gradients() -> None:
    w, frozen = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2, 2))
    opt = LARS([w, frozen], lr=0.1)
    take_step(opt, [w], [torch.ones(2, 2)])
    assert torch.equal(frozen.detach(), torch.ones(2, 2))
    assert frozen not in opt.state


def test_lars_rejects_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match="momentum"):
        LARS([nn.Parameter(torch.ones(1))], lr=0.1, momentum=1.5)


# ---- build_optimizer ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sgd", "lars", "adamw"])
@pytest.mark.parametrize("strategy_name", ["fixed", "learnable"])
def test_groups_hold_every_parameter_exactly_once(name: str, strategy_name: str) -> None:
    model = tiny_model()
    extra = {"tau_lr": 0.05} if strategy_name == "learnable" else {}
    strategy = create_strategy(strategy_name, num_samples=10, **extra)
    opt = build_optimizer(model, strategy, name=name, lr=0.3, weight_decay=1e-4)
    groups = {g["name"]: g for g in opt.param_groups}
    grouped = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in [*model.parameters(), *strategy.parameters()])
    assert {id(p) for p in groups["weights"]["params"]} == {id(p) for p in model.parameters() if p.ndim >= 2}
    assert {id(p) for p in groups["no_decay"]["params"]} == {id(p) for p in model.parameters() if p.ndim < 2}
    assert groups["weights"]["weight_decay"] == 1e-4 and groups["weights"]["lr"] == 0.3
    assert groups["no_decay"]["weight_decay"] == 0.0
    if strategy_name == "fixed":
        assert list(groups) == ["weights", "no_decay"]
    else:
        assert groups["strategy"]["params"] == [strategy.log_inv_tau]
        assert groups["strategy"]["lr"] == 0.05 and groups["strategy"]["weight_decay"] == 0.0
    if name == "lars":
        assert [g["lars"] for g in opt.param_groups] == [True, False, False][: len(groups)]


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("lars", LARS), ("adamw", torch.optim.AdamW)])
def test_build_optimizer_returns_the_named_optimiser(name: str, kind: type) -> None:
    opt = build_optimizer(tiny_model(), create_strategy("fixed", num_samples=10), name=name, lr=0.1,
                          weight_decay=0.0, betas=(0.8, 0.99))
    assert type(opt) is kind
    if name == "adamw":
        assert opt.defaults["betas"] == (0.8, 0.99)


def test_strategy_parameter_is_never_lars_scaled() -> None:
    strategy = create_strategy("learnable", num_samples=10, tau_lr=0.05)
    opt = build_optimizer(tiny_model(), strategy, name="lars", lr=10.0, weight_decay=0.1)
    theta = strategy.log_inv_tau.detach().clone()
    strategy.log_inv_tau.grad = torch.tensor(2.0)
    opt.step()
    torch.testing.assert_close(strategy.log_inv_tau.detach(), theta - 0.05 * 2.0)


def test_a_training_step_runs_through_model_strategy_and_optimiser() -> None:
    model, strategy = tiny_model(), create_strategy("learnable", num_samples=16)
    opt = build_optimizer(model, strategy, name="lars", lr=0.5, weight_decay=1e-6)
    x = torch.randn(16, 1, 8, 8)
    theta = strategy.log_inv_tau.detach().clone()
    out = strategy(model(x), model(x + 0.1 * torch.randn_like(x)), torch.arange(16), Clock())
    out.loss.backward()
    opt.step()
    assert not torch.equal(strategy.log_inv_tau.detach(), theta)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_build_optimizer_rejects_unknown_names_and_shared_parameters() -> None:
    strategy = create_strategy("fixed", num_samples=10)
    with pytest.raises(ValueError, match=r"unknown optimizer 'adam'.*'lars'"):
        build_optimizer(tiny_model(), strategy, name="adam", lr=0.1, weight_decay=0.0)
    learnable = create_strategy("learnable", num_samples=10)
    model = nn.Sequential(nn.Linear(2, 2))
    model.register_parameter("theta", learnable.log_inv_tau)
    with pytest.raises(ValueError, match="share a parameter"):
        build_optimizer(model, learnable, lr=0.1, weight_decay=0.0)


# ---- schedule -----------------------------------------------------------------------------------------------------
def scheduled_lrs(total: int, warmup: int, final: float, steps: int) -> list[list[float]]:
    """The lr of every group before each of `steps` optimiser steps (weights lr 1.0, strategy lr 0.05)."""
    strategy = create_strategy("learnable", num_samples=10, tau_lr=0.05)
    opt = build_optimizer(nn.Linear(3, 3), strategy, lr=1.0, weight_decay=0.0)
    sched = build_scheduler(opt, total_steps=total, warmup_steps=warmup, final_lr_ratio=final)
    lrs = []
    for _ in range(steps):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return lrs


def test_warmup_cosine_values() -> None:
    lrs = scheduled_lrs(total=100, warmup=10, final=0.1, steps=121)
    expected = {0: 0.0, 5: 0.5, 10: 1.0, 55: 0.1 + 0.9 * 0.5, 100: 0.1, 120: 0.1}
    for step, multiplier in expected.items():
        weights, _, strategy = lrs[step]
        assert weights == pytest.approx(multiplier)
        assert strategy == pytest.approx(0.05 * multiplier)  # same multiplier for the τ group
    assert lrs[30][0] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 20 / 90)))


def test_no_warmup_starts_at_the_base_lr() -> None:
    assert WarmupCosine(total_steps=10)(0) == 1.0
    all_warmup = WarmupCosine(total_steps=10, warmup_steps=10, final_lr_ratio=0.3)
    assert all_warmup(9) == pytest.approx(0.9) and all_warmup(10) == pytest.approx(0.3)  # the end is the end


def test_scheduler_state_dict_round_trips() -> None:
    def build() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.4)
        return opt, build_scheduler(opt, total_steps=50, warmup_steps=5, final_lr_ratio=0.2)

    opt, sched = build()
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert state["lr_lambdas"][0] == {"total_steps": 50, "warmup_steps": 5, "final_lr_ratio": 0.2}
    opt2, sched2 = build()
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(state)
    for _ in range(5):
        assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()


def test_schedule_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(total_steps=10, warmup_steps=11)
    with pytest.raises(ValueError, match="final_lr_ratio"):
        WarmupCosine(total_steps=10, final_lr_ratio=1.5)


def test_scaled_lr_follows_simclr() -> None:
    assert scaled_lr(0.3, 512) == pytest.approx(0.6)
    assert scaled_lr(0.075, 4096, rule="sqrt") == pytest.approx(4.8)
    assert scaled_lr(0.1, 512, rule="none") == 0.1
    with pytest.raises(ValueError, match=r"unknown lr scaling rule 'log'.*'sqrt'"):
        scaled_lr(0.3, 256, rule="log")
