"""`tempbench perf strategies`: the cost of each strategy's forward + backward + update on random features, as a ratio
to `fixed` (the SimCLR NT-Xent), measured side by side in one process.

Timings are interleaved (one step of every strategy per round) and summarised by the median over rounds, so drift in
the machine's speed hits every strategy alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any


def time_strategies(names: list[str], batch_sizes: list[int], dim: int = 128, rounds: int = 20, warmup: int = 3,
                    device: str = "cpu", num_samples: int = 50_000, seed: int = 0) -> list[dict[str, Any]]:
    """Median seconds per step (forward + backward + update) of each strategy at each batch size."""
    import torch

    from tempbench.strategies import Step, create_strategy

    gen = torch.Generator().manual_seed(seed)
    rows = []
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
                elapsed = _one_step(s, a, b, idx, Step(step=r, epochs=10, steps_per_epoch=10), device)
                if r >= warmup:
                    times[n].append(elapsed)
        base = statistics.median(times["fixed"]) if "fixed" in times else None
        for n in names:
            med = statistics.median(times[n])
            rows.append({"strategy": n, "batch": batch, "dim": dim, "device": str(device), "ms": 1e3 * med,
                         "ratio_to_fixed": med / base if base else None})
    return rows


def _one_step(strategy: Any, a: Any, b: Any, idx: Any, step: Any, device: str) -> float:
    import torch

    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    out = strategy(a, b, idx, step)
    out.loss.backward()
    strategy.update(out, idx, step)
    sync()
    elapsed = time.perf_counter() - start
    a.grad = b.grad = None
    return elapsed


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'strategy':<12} {'B':>5} {'ms/step':>9} {'÷ fixed':>8}"]
    for r in rows:
        ratio = f"{r['ratio_to_fixed']:.3f}" if r["ratio_to_fixed"] is not None else "-"
        lines.append(f"{r['strategy']:<12} {r['batch']:>5} {r['ms']:>9.2f} {ratio:>8}")
    return "\n".join(lines)


def _run_strategies(args: argparse.Namespace) -> int:
    import torch

    from tempbench.strategies import list_strategies

    names = args.strategies.split(",") if args.strategies else list_strategies()
    if "fixed" not in names:
        names = ["fixed", *names]
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = time_strategies(names, args.batch_sizes, dim=args.dim, rounds=args.rounds, device=args.device)
    if args.json:
        print(json.dumps({"device": args.device, "threads": torch.get_num_threads(), "rows": rows}, indent=2))
    else:
        print(f"strategy step time (forward + backward + update), d={args.dim}, device={args.device}, "
              f"threads={torch.get_num_threads()}, median of {args.rounds} interleaved rounds")
        print(format_table(rows))
    return 0


def register(subparsers: Any) -> None:
    perf = subparsers.add_parser("perf", help="performance benchmarks that print ratios")
    sub = perf.add_subparsers(dest="perf_command", metavar="WHAT", required=True)
    p = sub.add_parser("strategies", help="strategy step time on random features, as a ratio to `fixed`",
                       description=__doc__)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024], metavar="B")
    p.add_argument("--dim", type=int, default=128, help="feature dimension d (default 128)")
    p.add_argument("--rounds", type=int, default=20, help="timed rounds per strategy (default 20)")
    p.add_argument("--strategies", default="", help="comma-separated names (default: every registered strategy)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run_strategies)
