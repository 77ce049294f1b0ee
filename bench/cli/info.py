"""`tempbench strategies` and `tempbench metrics`: what is registered, with everything a user needs to pick one."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from tempbench.eval import list_metrics
from tempbench.strategies import get_strategy_class, list_strategies, strategy_pairings

from .common import print_json

CAPABILITIES = ("per_sample_state", "per_sample_tau", "learnable")  # the Strategy class flags a listing shows


def strategy_info(name: str, pairing: str) -> dict[str, Any]:
    """A strategy's doc line, capabilities, and each hyperparameter's default, for one pairing."""
    cls = get_strategy_class(name, pairing)
    defaults, ranges = cls.resolve_hyperparameters(), cls.hyperparameter_ranges()
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    return {"name": name, "pairing": pairing, "summary": (cls.__doc__ or "").strip().split("\n")[0],
            "capabilities": [c for c in CAPABILITIES if getattr(cls, c)],
            "hyperparameters": {k: {"default": v, "type": str(fields[k].type), "range": ranges.get(k, "")}
                                for k, v in defaults.items()},
            "tau_hyperparameters": list(cls.tau_hyperparameters), "build_options": list(cls.build_options)}


def strategies(args: argparse.Namespace) -> int:
    """`tempbench strategies`: every registered strategy × pairing with its first doc line, capabilities and
    hyperparameters (default, range or type); JSON with --json. Exit code 0."""
    infos = [strategy_info(n, p) for n in list_strategies() for p in strategy_pairings(n)]
    if args.json:
        print_json(infos)
        return 0
    for info in infos:
        caps = ", ".join(info["capabilities"]) or "global τ"
        print(f"{info['name']}  [{info['pairing']}; {caps}]  {info['summary']}")
        for key, hp in info["hyperparameters"].items():
            print(f"    {key:<18} {hp['default']!r:<12} {hp['range'] or hp['type']}")
        if info["build_options"]:
            print(f"    (also: {', '.join(info['build_options'])})")
    return 0


def metrics(args: argparse.Namespace) -> int:
    """`tempbench metrics`: every registered metric with its split, pairing, leaderboard/summary flags, label and
    protocol; JSON (without the compute function) with --json. Exit code 0."""
    found = list_metrics()
    if args.json:
        print_json([{k: v for k, v in dataclasses.asdict(m).items() if k != "compute"} for m in found])
        return 0
    width = max(len(m.name) for m in found)
    for m in found:
        flags = "".join(f for f, on in (("L", m.leaderboard), ("S", m.summary)) if on)
        print(f"{m.name:<{width}}  {m.split:<4} {m.pairing:<10} {flags:<2}  {m.label}: {m.protocol}")
    print("split: test = reported, never selected on; val = held out from training (what studies select on). "
          "L = a default leaderboard column, S = in the summary line.")
    return 0
