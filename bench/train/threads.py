"""How many CPU threads a run uses when `threads = 0`: measured, not guessed (see `calibrated_threads`)."""

from __future__ import annotations

import os
import statistics
import time

import torch
from torch import Tensor


def calibrated_threads(model: torch.nn.Module, x: Tensor, rounds: int = 3) -> int:
    """1 or all cores, whichever runs a forward + backward of this model faster right now (median of `rounds`
    interleaved timings on a small batch, ~0.3 s for the small CNN).

    Why measure: on an idle machine all cores win (0.87 vs 1.32 s a step here), but when other multi-threaded
    processes share the cores every parallel kernel waits at its barrier for a descheduled thread, and one thread
    wins (1.97 vs 2.61 s). The load average cannot tell these apart: it counts this process's own earlier runs.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
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
