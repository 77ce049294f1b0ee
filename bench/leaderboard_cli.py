"""`tempbench leaderboard RUNS.csv [--out DIR]`: rebuild the leaderboard tables and figures from result rows and print
the Markdown. Outputs go next to RUNS.csv unless --out says otherwise; every file is replaced atomically."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("leaderboard", help="aggregate result rows into leaderboard tables and figures",
                                   description="Rebuild leaderboard.md, leaderboard.csv and figures from result "
                                   "rows and print the Markdown.")
    parser.add_argument("runs", type=Path, metavar="RUNS.csv", help="result rows, one per run (see tempbench.results)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for leaderboard.md, leaderboard.csv and the PNG figures (default: RUNS.csv's)")
    parser.set_defaults(func=run_leaderboard)


def run_leaderboard(args: argparse.Namespace) -> int:
    from tempbench.results import build_leaderboard, read_rows

    rows = read_rows(args.runs)
    out_dir = args.out if args.out is not None else args.runs.parent
    result = build_leaderboard(rows, out_dir)
    print(result["markdown"])
    return 0
