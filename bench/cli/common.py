"""What several commands share: the tracker from the tracking options, where its runs went, seeds lists, JSON."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from tempbench.tracking import Tracker, create_tracker, local_store_uri, tracking_failed, ui_command


def make_tracker(args: argparse.Namespace, out: Path) -> Tracker:
    """The MLflow tracker the tracking options ask for (`add_tracking`): off with --no-tracking, --tracking-uri when
    given, else a SQLite store under `out`. With tracking on, SIGTERM then ends the command as Ctrl-C does
    (`close_runs_on_sigterm`), so its open runs close KILLED with `interrupted=true` instead of staying RUNNING."""
    if not args.no_tracking:
        close_runs_on_sigterm()
    return create_tracker(enabled=not args.no_tracking, tracking_uri=args.tracking_uri, out_dir=out)


def close_runs_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt in the main thread, where nothing else handles SIGTERM yet: the run being
    trained closes as interrupted, and the command line says what was kept and how to resume (exit 130)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def tracking_hint(args: argparse.Namespace, out: Path) -> str:
    """Where the MLflow runs went, as a line to print: empty with --no-tracking, and a warning's echo instead of
    an address when tracking failed in this process (the runs after the failure are not there)."""
    if args.no_tracking:
        return ""
    if tracking_failed(args.tracking_uri or local_store_uri(out)):
        return "MLflow: tracking failed (see the warning above); nothing after the failure was recorded"
    if args.tracking_uri:
        return f"MLflow runs: {args.tracking_uri}"
    return f"MLflow runs: {ui_command(out)}"


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" or "0-4" (inclusive) -> the seeds; a bare count is refused as ambiguous."""
    try:
        if "-" in text.strip("-"):  # strip: a negative number is no range
            low, high = (int(x) for x in text.split("-", 1))
            seeds = list(range(low, high + 1))
        elif "," in text:
            seeds = [int(x) for x in text.split(",") if x.strip()]
        else:
            n = int(text)
            count = f"--seeds 0-{n - 1} for {n} seeds, or " if n > 0 else ""
            raise ValueError(f"--seeds {n} is ambiguous: write {count}--seeds {n}, for seed {n} alone")
    except ValueError as exc:
        if "ambiguous" in str(exc):
            raise
        raise ValueError(f"--seeds takes a list (0,1,2) or a range (0-4), got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds needs distinct seeds >= 0, got {text!r}")
    return seeds


def print_json(data: Any) -> None:
    """JSON on stdout with NaN/inf as null (strict JSON any parser reads)."""
    print(json.dumps(_strict(data), indent=2, default=str))


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def note(text: str) -> None:
    """A progress or where-it-went line: stderr, so stdout stays the result (and parseable with --json)."""
    if text:
        print(text, file=sys.stderr)
