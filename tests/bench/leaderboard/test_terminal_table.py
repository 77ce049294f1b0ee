"""The terminal leaderboard stays aligned whatever the width of a cell: a two-digit CI, a mean of 100."""

from __future__ import annotations

import json
import re

import pandas as pd

from tempbench.leaderboard import format_terminal, summarize_rows

METRICS = ["knn200_top1", "linear_top1", "linear_few"]
CELL = re.compile(r"\d+\.\d\d ± \d+\.\d\d")  # "55.20 ± 1.27"; one character after it marks the best


def row(strategy: str, seed: int, accuracy: float) -> dict:
    config = {"strategy": strategy, "epochs": 5, "hyperparameters": {}}
    return {"strategy": strategy, "dataset": "digits-lt", "seed": seed, "config": json.dumps(config),
            "config_hash": strategy, "lt_hash": "abc", "knn200_top1": accuracy, "linear_top1": accuracy,
            "linear_few": accuracy - 10.0}


def test_columns_align_when_a_ci_reaches_two_digits():
    # fixed: seeds 40 points apart (a three-digit CI over 2 seeds); isogclr: a one-digit CI; sogclr: a mean of 100
    rows = [row("fixed", 0, 20.0), row("fixed", 1, 60.0), row("isogclr", 0, 55.1), row("isogclr", 1, 55.3),
            row("sogclr", 0, 100.0), row("sogclr", 1, 100.0)]
    lines = format_terminal(summarize_rows(pd.DataFrame(rows), METRICS), METRICS).splitlines()
    header, table = lines[2], lines[3:]
    ends = [[m.end() for m in CELL.finditer(line)][:len(METRICS)] for line in table]  # then the Δ text
    assert "254.12" in table[0] and "1.27" in table[1] and "100.00" in table[2]
    assert len(ends[0]) == len(METRICS) and ends[0] == ends[1] == ends[2], "\n".join(lines)
    header_ends = [m.end() for m in re.finditer(r"\S+", header)][2:2 + len(METRICS)]
    assert header_ends == [end + 1 for end in ends[0]]  # each header over its cells, the best-mark slot included
    assert header.index("seeds") + len("seeds") == table[0].index(" 2 ") + 2
