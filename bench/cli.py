"""The `tempbench` command line. Each command lives in its own module, which exposes `register(subparsers)`;
heavy imports (torch, faiss, mlflow, optuna) happen inside the command functions, so `tempbench --help` is instant."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# module -> adds one top-level command (and its sub-commands) to the parser
COMMAND_MODULES = (
    "tempbench.perf",
    "tempbench.run_cli",
    "tempbench.leaderboard_cli",
    "tempbench.data_cli",
    "tempbench.sensitivity_cli",
)


class CliError(Exception):
    """A user error: printed as one line on stderr, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tempbench", description="Benchmark temperature strategies in contrastive self-supervised learning. "
        "Start with `tempbench run` (the quick suite); `tempbench COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def _version() -> str:
    from tempbench import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, FileNotFoundError) as exc:
        print(f"tempbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
