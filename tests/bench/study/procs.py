"""What the spawned workers of test_worker_kill.py run: module-level (picklable by name) and light to import, so a
worker starts in a second rather than importing the test module's scipy and pytest plugins."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def paced(strategy: str, params: dict, reporter) -> float:
    """A trial function of about a second, one report per quarter: long enough to be killed mid-trial."""
    tau = params["strategy"]["tau"]
    for epoch in range(4):
        time.sleep(0.25)
        reporter.report(epoch, tau)
    return tau


def sleep_then_exit(seconds: float, kill_self: bool, done: str) -> None:
    """Sleep, then kill this process with SIGKILL, or end normally and leave the file `done`."""
    time.sleep(seconds)
    if kill_self:
        os.kill(os.getpid(), signal.SIGKILL)
    Path(done).touch()
