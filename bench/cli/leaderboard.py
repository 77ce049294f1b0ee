"""`tempbench leaderboard RUNS.csv`: rebuild the leaderboard tables and figures from result rows and print it."""

from __future__ import annotations

import argparse
from pathlib import Path

from tempbench.eval import get_metric
from tempbench.leaderboard import build_leaderboard, read_rows

from .common import print_json


def main(args: argparse.Namespace) -> int:
    runs = Path(args.runs)
    for name in args.metric or []:
        get_metric(name)  # unknown -> ValueError with a did-you-mean
    board = build_leaderboard(read_rows(runs), Path(args.out) if args.out else runs.parent, metrics=args.metric)
    if args.json:
        print_json(board.summary.to_dict(orient="records"))
    else:
        print(board.terminal, end="")
    return 0
