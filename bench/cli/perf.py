"""`tempbench perf` (the full table) and `tempbench perf strategies` (strategy-only timings)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tempbench.perf.strategies import format_table, time_strategies
from tempbench.perf.table import format_full_table, measure_table
from tempbench.provenance import resolve_device
from tempbench.strategies import list_strategies
from tempbench.util import did_you_mean, write_atomic

from .common import note


def chosen_strategies(text: str) -> list[str]:
    """The comma-separated names (every registered one when empty), `fixed` first: every ratio is to it."""
    views = list_strategies(pairing="views")
    names = [n.strip() for n in text.split(",") if n.strip()] or views
    for name in names:
        if name not in views:  # the perf table times views steps; image_text ones have their own rows
            raise ValueError(f"unknown views strategy {name!r}{did_you_mean(name, views)}; valid: {', '.join(views)}")
    return ["fixed", *[n for n in names if n != "fixed"]]


def write_outputs(args: argparse.Namespace, result: dict, text: str) -> None:
    """DIR/perf.json and DIR/perf.txt, when --out DIR is given."""
    if not args.out:
        return
    out = Path(args.out)
    write_atomic(out / "perf.json", lambda fh: fh.write(json.dumps(result, indent=2) + "\n"))
    write_atomic(out / "perf.txt", lambda fh: fh.write(text + "\n"))
    note(f"written: {out / 'perf.json'}, {out / 'perf.txt'}")


def table(args: argparse.Namespace) -> int:
    """`tempbench perf`: measure the full table (`tempbench.perf.table`), print it (or JSON), write it with --out."""
    if args.threads:
        torch.set_num_threads(args.threads)
    args.strategies = ",".join(chosen_strategies(args.strategies))
    result = measure_table(args, resolve_device(args.device), progress=True)  # bars on stderr: stdout stays the table
    text = format_full_table(result)
    write_outputs(args, result, text)
    print(json.dumps(result, indent=2) if args.json else text)
    return 0


def strategies(args: argparse.Namespace) -> int:
    """`tempbench perf strategies`: ms per strategy step on random features at each --batch-sizes, ÷ `fixed`."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rounds = args.rounds or 20
    rows = time_strategies(chosen_strategies(args.strategies), args.batch_sizes, dim=args.dim, rounds=rounds,
                           device=str(device), progress=True)
    result = {"device": str(device), "threads": torch.get_num_threads(), "dim": args.dim, "rounds": rounds,
              "rows": rows}
    text = (f"strategy step time (forward + backward + update), d={args.dim}, device={device}, "
            f"threads={torch.get_num_threads()}, median of {rounds} interleaved rounds\n{format_table(rows)}")
    write_outputs(args, result, text)
    print(json.dumps(result, indent=2) if args.json else text)
    return 0
