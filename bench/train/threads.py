"""How many CPU threads a run uses, and how many runs of a suite train side by side.

`threads = 0` means, by command:
- a suite (`tempbench run`): one thread per run (`suite_threads`), and as many runs at once, each in its own
  worker process, as there are cores (`suite_workers`). Small models do not scale across threads, but independent
  runs do across processes; and a fixed count keeps every float reduction in one order, so the same command gives
  bit-identical rows on an idle and on a busy machine, with one worker or eight beside it.
- one run (`tempbench train`, a sensitivity trial): measured, 1 or all cores (`calibrated_threads`): the fastest
  for a single run right now, at the price of numbers that can change with the machine's load.
A count set explicitly (`threads = N`) is used as given everywhere.
"""

from __future__ import annotations

import os
import statistics
import time

import torch
from torch import Tensor

SUITE_THREADS = 1  # per run of a suite with threads = 0: its runs go in parallel processes instead


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def suite_threads(threads: int) -> int:
    """The CPU threads of each run of a suite: `threads`, or SUITE_THREADS for 0 (see the module docstring)."""
    return threads or SUITE_THREADS


def suite_workers(threads: int, runs: int) -> int:
    """Worker processes for `runs` CPU runs of `threads` threads each: one per `threads` cores, at least one, never
    more than there are runs."""
    return max(1, min(runs, usable_cores() // max(threads, 1)))


def calibrated_threads(model: torch.nn.Module, x: Tensor, rounds: int = 3) -> int:
    """1 or all cores, whichever runs a forward + backward of this model faster right now (median of `rounds`
    interleaved timings on a small batch, ~0.3 s for the small CNN).

    Why measure: on an idle machine all cores win (0.87 vs 1.32 s a step here), but when other multi-threaded
    processes share the cores every parallel kernel waits at its barrier for a descheduled thread, and one thread
    wins (1.97 vs 2.61 s). The load average cannot tell these apart: it counts this process's own earlier runs.
    """
    cores = usable_cores()
    if cores == 1:
        return 1
    # the timed passes update BatchNorm's running statistics: put them back, or the thread count would leave a
    # trace in the evaluated model (explicit and automatic threads gave different test accuracy)
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    times: dict[int, list[float]] = {1: [], cores: []}
    for _ in range(rounds + 1):  # the first round warms up the allocator and oneDNN
        for n in times:
            torch.set_num_threads(n)
            start = time.perf_counter()
            model(x).square().mean().backward()
            times[n].append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    return min(times, key=lambda n: statistics.median(times[n][1:]))
