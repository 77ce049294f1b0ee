"""The `tempbench` command line: parsers in `parser.py`, one implementation module per command, imported when the
command runs.

Exit codes: 0 done; 1 a run failed (e.g. its loss became NaN); 2 a usage error (a bad name, value or file, an
optional extra that is not installed, an output folder that cannot take files or a disk that filled up: one line
naming it, no traceback); 130 interrupted (one line saying what was kept and how to resume). Anything else is a bug
and keeps its traceback. The folder `--out` names is checked before any work (and the results file in it, for the
commands that append rows); a finished run's row that no file could take is printed on stdout as JSON.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import shlex
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tempbench.util import MissingExtra, RowNotKept, WorkersLost, check_output_folder

from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`) and return its exit code (see the module docstring).
    Tests call it in-process: `main(["data", "show", "digits", "--json"])`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would blame the top-level parser and print its usage: name the command's instead
        command_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = argv  # the command as typed (a launcher re-runs it, a Ctrl-C hint repeats it)
    module, _, function = args.impl.partition(":")
    name = f"tempbench {args.command}"
    formatter = warnings.formatwarning
    warnings.formatwarning = one_line_warning(name, formatter)
    try:
        check_outputs(args)
        return int(getattr(importlib.import_module(module), function)(args) or 0)
    except BrokenPipeError:  # e.g. `tempbench metrics | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except WorkersLost as exc:  # workers were killed: the study or sweep is kept, the same command resumes it
        print(f"{name}: stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted. Finished runs and trials are kept; run the same command again to resume:\n"
              f"  tempbench {shlex.join(argv)}", file=sys.stderr)
        return 130
    except Exception as exc:
        return report_failure(name, exc)
    finally:
        warnings.formatwarning = formatter


def check_outputs(args: argparse.Namespace) -> None:
    """Before any work: the folder --out names can take files (ValueError, one line, otherwise), and for a command
    that appends rows to DIR/runs.csv (`args.appends_rows`, set by the parser) that file, if any, is not corrupt. A
    run must not train for an hour to find it has nowhere to go."""
    folder = output_folder(args)
    if folder is None:
        return
    check_output_folder(folder)
    if getattr(args, "appends_rows", False):
        from tempbench.leaderboard.rows import check_rows_file  # here: `tempbench --help` must not import pandas

        check_rows_file(folder / "runs.csv")


def output_folder(args: argparse.Namespace) -> Path | None:
    """The folder --out names when the command will write there: None when unset (the command derives its own)
    and for `data show` without --views, which writes nothing."""
    out = getattr(args, "out", None)
    if out is None or (args.command == "data" and not getattr(args, "views", False)):
        return None
    return Path(out)


def one_line_warning(name: str, fallback: Any) -> Any:
    """A `warnings.formatwarning` that formats tempbench's own warnings (few visits, a file not written, a figure
    skipped: things a user reads and acts on) as one line, `tempbench CMD: warning: ...`, without the source line
    Python would add; other libraries' warnings go to `fallback` unchanged. A formatter, not a `showwarning`: code
    that records warnings (`warnings.catch_warnings(record=True)`, pytest) still records them. Picklable, so spawned
    workers (suites, studies) format their warnings the same way."""
    return OneLineWarning(name, fallback)


class OneLineWarning:
    """See `one_line_warning`."""

    def __init__(self, name: str, fallback: Any) -> None:
        self.name, self.fallback = name, fallback

    def __call__(self, message: Any, category: type[Warning], filename: str, lineno: int,
                 line: str | None = None) -> str:
        if category.__module__.split(".")[0] != "tempbench":
            return self.fallback(message, category, filename, lineno, line)
        return f"{self.name}: warning: {message}\n"

    def __reduce__(self) -> tuple:
        # unpickled in a spawned worker, before it installs the formatter: the worker's own default is the fallback
        return one_line_warning_here, (self.name,)


def one_line_warning_here(name: str) -> OneLineWarning:
    """`one_line_warning` over this process's current `warnings.formatwarning`."""
    return OneLineWarning(name, warnings.formatwarning)


def command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The deepest sub-command parser that `args` went through (`tempbench perf strategies` -> its own), following
    each level's sub-parsers by their own `dest`, so a new nested command needs nothing here."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        choice = getattr(args, sub.dest, None) if sub is not None else None
        if choice not in (sub.choices if sub is not None else {}):
            return parser
        parser = sub.choices[choice]


def report_failure(name: str, exc: Exception) -> int:
    """Print why command `name` failed and return its exit code: one line for what the user can fix (exit 2: a bad
    input, a missing extra, a full or read-only disk; a row no file could take is printed on stdout first) or what
    stopped a run (exit 1); the traceback and "a bug" for everything else (exit 1)."""
    missing = missing_extra(exc)
    if missing is not None:  # before the generic branch: MissingExtra is an ImportError, which would read as a bug
        print(f"{name}: error: {missing}", file=sys.stderr)
        return 2
    from tempbench.train import NonFiniteLossError  # here: `tempbench --help` must not import training

    if isinstance(exc, NonFiniteLossError):
        print(f"{name}: run stopped: {exc}", file=sys.stderr)
        return 1
    if isinstance(exc, RowNotKept):
        from .common import print_json

        print_json(exc.row)  # stdout: the finished run's numbers, which no file could take
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
        print(f"{name}: error: could not {DISK_ERRORS[exc.errno]} {exc.filename or 'a file'}: {exc.strerror}",
              file=sys.stderr)
        return 2
    if isinstance(exc, (ValueError, FileNotFoundError)) and raised_by_tempbench(exc):
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    traceback.print_exception(exc)
    print(f"{name}: failed with an unexpected {type(exc).__name__} (a bug: please report it with the traceback "
          f"above)", file=sys.stderr)
    return 1


# What the file system refused, by errno: the user's to fix (free space, another folder), wherever it was raised
DISK_ERRORS = {errno.ENOSPC: "write", errno.EDQUOT: "write", errno.EROFS: "write", errno.EACCES: "access",
               errno.EPERM: "access"}


def missing_extra(exc: BaseException) -> MissingExtra | None:
    """`exc` if it is a `MissingExtra`, else the first one among its causes and contexts (a library that caught our
    ImportError and raised its own, e.g. a plug-in loader), else None."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:  # `seen`: a chain can loop back on itself
        if isinstance(found, MissingExtra):
            return found
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return None


def raised_by_tempbench(exc: BaseException) -> bool:
    """Whether the innermost frame that raised `exc` is tempbench's own code (its checks raise ValueError and
    FileNotFoundError on purpose); a ValueError from inside a library (e.g. matplotlib) is not the user's fault."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    filename = str(Path(tb.tb_frame.f_code.co_filename).resolve())
    return any(filename.startswith(d) for d in tempbench_dirs())


def tempbench_dirs() -> tuple[str, ...]:
    """The folders of tempbench's own code: the package and its strategies and datasets sub-packages (separate
    folders in an editable install)."""
    import tempbench.datasets
    import tempbench.strategies

    return tuple(str(Path(m.__file__).resolve().parent) for m in (sys.modules["tempbench"], tempbench.strategies,
                                                                  tempbench.datasets))


if __name__ == "__main__":
    sys.exit(main())
