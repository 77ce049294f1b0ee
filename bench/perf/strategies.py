"""`tempbench perf strategies`: the cost of each strategy's forward + backward + update on random features, as a
ratio to `fixed` (the SimCLR NT-Xent), median over interleaved rounds."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from tempbench.strategies import Clock, create_strategy

from .train import timing_bar


def time_strategies(names: list[str], batch_sizes: list[int], dim: int = 128, rounds: int = 20, warmup: int = 3,
                    device: str = "cpu", num_samples: int = 50_000, seed: int = 0,
                    progress: bool = False) -> list[dict[str, Any]]:
    """Median cost of one step (forward + backward + update) of each strategy at each batch size, on random
    (batch, dim) embedding pairs with `num_samples` entries of per-sample state.

    Rows: {strategy, batch, dim, device, ms (median over `rounds` after `warmup` untimed ones), ratio_to_fixed (None
    without `fixed` among the names)}. Strategies are interleaved within each round, so drift hits all alike.
    `progress`: a bar over every batch size's rounds on stderr.
    """
    gen = torch.Generator().manual_seed(seed)
    rows = []
    bar = timing_bar(len(batch_sizes) * (warmup + rounds), f"strategy steps ({len(names)} rows)", progress)
    for batch in batch_sizes:
        a = torch.randn(batch, dim, generator=gen).to(device).requires_grad_()
        b = torch.randn(batch, dim, generator=gen).to(device).requires_grad_()
        idx = torch.randperm(num_samples, generator=gen)[:batch].to(device)
        strategies = {n: create_strategy(n, num_samples=num_samples).to(device) for n in names}
        for s in strategies.values():
            s.check_inputs = False  # what the runner does: indices are validated once, not per step
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(warmup + rounds):
            for n, s in strategies.items():
                elapsed = _one_step(s, a, b, idx, Clock(step=r, epochs=10, steps_per_epoch=10), device)
                if r >= warmup:
                    times[n].append(elapsed)
            bar.update(1)
        base = statistics.median(times["fixed"]) if "fixed" in times else None
        for n in names:
            med = statistics.median(times[n])
            rows.append({"strategy": n, "batch": batch, "dim": dim, "device": str(device), "ms": 1e3 * med,
                         "ratio_to_fixed": med / base if base else None})
    bar.close()
    return rows


def _one_step(strategy: Any, a: Any, b: Any, idx: Any, step: Any, device: str) -> float:
    # CUDA runs asynchronously: synchronise before and after, or the clock measures kernel launches only
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    out = strategy(a, b, idx, step)
    out.loss.backward()
    strategy.update(out, idx, step)
    sync()
    elapsed = time.perf_counter() - start
    a.grad = b.grad = None  # the inputs are reused every round: no gradient accumulation into the next timing
    return elapsed


def format_table(rows: list[dict[str, Any]]) -> str:
    """The `time_strategies` rows as a fixed-width text table: strategy, batch, ms/step and the ratio to `fixed`."""
    lines = [f"{'strategy':<16} {'B':>5} {'ms/step':>9} {'÷ fixed':>8}"]
    for r in rows:
        ratio = f"{r['ratio_to_fixed']:.3f}" if r["ratio_to_fixed"] is not None else "-"
        lines.append(f"{r['strategy']:<16} {r['batch']:>5} {r['ms']:>9.2f} {ratio:>8}")
    return "\n".join(lines)


