"""Every ordinary user mistake ends in one line on stderr, `tempbench CMD: error: ...`, exit code 2, no traceback:
a strategy hyperparameter of the wrong type, an output folder that cannot take files, a truncated or corrupt
results file, a suite file that is not TOML, not UTF-8 or empty, an optional extra that is not installed. Each case
is refused before anything trains (the commands run in-process; none gets as far as loading data).

A read-only folder and a full disk are simulated by making the folder probe fail with EROFS / ENOSPC (as root,
permission bits alone do not stop a write; results/bad-inputs.sh shows the same lines on a real read-only and a
real full tmpfs)."""

from __future__ import annotations

import errno
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tempbench.cli import main, report_failure

TRAIN = ["train", "--strategy", "fixed", "--dataset", "digits", "--epochs", "1", "--no-tracking"]
HEADER = "run_id,strategy,dataset,seed,linear_top1,history\n"
GOOD_ROW = 'fixed-digits-s0-abc,fixed,digits,0,81.5,"[{""loss"": 1.0}]"\n'
SUITE = 'name = "tiny"\ndatasets = ["digits"]\nstrategies = ["fixed"]\nseeds = 1\n[run]\nepochs = 1\n'


def results_file(folder: Path, text: str, encoding: str = "utf-8") -> Path:
    """A runs.csv holding `text` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "runs.csv"
    path.write_bytes(text.encode(encoding))
    return path


def suite_file(tmp: Path, data: bytes) -> str:
    path = tmp / "suite.toml"
    path.write_bytes(data)
    return str(path)


def probe_fails(code: int) -> Callable[[pytest.MonkeyPatch], None]:
    """A setup that makes every probe write fail with OSError(`code`), the way a read-only or a full disk does."""

    def setup(monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(*args: object, **kwargs: object) -> None:
            raise OSError(code, os.strerror(code), kwargs.get("dir"))

        monkeypatch.setattr(tempfile, "TemporaryFile", refuse)

    return setup


# case id -> (argv built from tmp_path, the message (a regex), a setup run first or None)
CASES: dict[str, tuple[Callable[[Path], list[str]], str, Callable[[pytest.MonkeyPatch], None] | None]] = {
    "hyperparameter-not-a-number": (
        lambda t: ["train", "--strategy", "isogclr", "--dataset", "digits", "--set", "rho=abc", "--out", str(t)],
        r"rho must be float, got 'abc'$", None),
    "hyperparameter-two-values": (
        lambda t: [*TRAIN, "--set", "tau=0.1,0.2", "--out", str(t)], r"tau must be float, got '0.1,0.2'$", None),
    "hyperparameter-a-bool": (
        lambda t: [*TRAIN, "--set", "tau=true", "--out", str(t)], r"tau must be float, got True$", None),
    "hyperparameter-choice-typo": (
        lambda t: ["train", "--strategy", "sogclr", "--dataset", "digits", "--set", "first_visit=sampel",
                   "--out", str(t)], r"first_visit must be one of .*; got 'sampel' \(did you mean 'sample'\?\)$",
        None),
    "run-setting-not-a-number": (
        lambda t: [*TRAIN, "--set", "lr=abc", "--out", str(t)], r"lr must be float, got 'abc'$", None),
    "out-is-a-file": (
        lambda t: [*TRAIN, "--out", str(touch(t / "afile"))], r"output folder .*/afile is a file, not a folder$",
        None),
    "out-under-a-file": (
        lambda t: [*TRAIN, "--out", str(touch(t / "afile") / "sub")],
        r"output folder .*/afile/sub cannot be created: .*/afile is a file$", None),
    "out-read-only": (
        lambda t: [*TRAIN, "--out", str(t)], r"output folder .* cannot be written: Read-only file system$",
        probe_fails(errno.EROFS)),
    "out-disk-full": (
        lambda t: [*TRAIN, "--out", str(t / "new" / "deeper")],
        r"output folder .*/new/deeper cannot be created in .*: No space left on device$", probe_fails(errno.ENOSPC)),
    "leaderboard-truncated-csv": (
        lambda t: ["leaderboard", str(results_file(t, HEADER + GOOD_ROW + "fixed-digits-s1-abc,fixed,dig")),
                   "--no-figures"],
        r"results file .*runs.csv, line 3: 3 fields where its header has 6 \(a truncated or corrupt row", None),
    "leaderboard-cut-inside-a-cell": (
        lambda t: ["leaderboard", str(results_file(t, HEADER + GOOD_ROW + 'x,fixed,digits,1,80.0,"[{""lo')),
                   "--no-figures"],
        r"results file .*runs.csv, line 3: unexpected end of data \(a truncated or corrupt row", None),
    "leaderboard-stray-quote": (
        lambda t: ["leaderboard", str(results_file(t, HEADER + GOOD_ROW + 'x,fix"ed,digits,1,80.0,\n'
                                                      'y,"fixed"d,digits,2,80.0,\n')), "--no-figures"],
        r"results file .*runs.csv, line 4: ',' expected after '\"'", None),
    "leaderboard-not-utf8": (
        lambda t: ["leaderboard", str(results_file(t, HEADER + GOOD_ROW + "x,fixé,digits,1,80,\n", "latin-1")),
                   "--no-figures"],
        r"results file .*runs.csv, line 3: not UTF-8 text \(byte 0xe9\)", None),
    "train-into-a-corrupt-csv": (
        lambda t: [*TRAIN, "--out", str(results_file(t / "out", HEADER + "a,b\n").parent)],
        r"results file .*/out/runs.csv, line 2: 2 fields where its header has 6", None),
    "run-into-a-corrupt-csv": (
        lambda t: ["run", "--suite", suite_file(t, SUITE.encode()), "--no-tracking",
                   "--out", str(results_file(t / "out", HEADER + GOOD_ROW[:30]).parent)],
        r"results file .*/out/runs.csv, line 2: 3 fields where its header has 6", None),
    "suite-syntax-error": (
        lambda t: ["run", "--suite", suite_file(t, b'datasets = ["digits"]\nstrategies = [fixed]\n'), "--out", str(t),
                   "--no-tracking"],
        r"suite file .*suite.toml, line 2, column 15: invalid TOML \(Invalid value\)$", None),
    "suite-cut-short": (
        lambda t: ["run", "--suite", suite_file(t, b'datasets = ["digits"]\nstrategies = [\n'), "--out", str(t),
                   "--no-tracking"],
        r"suite file .*suite.toml, line 3 \(end of file\): invalid TOML \(Invalid value\)$", None),
    "suite-utf16": (
        lambda t: ["run", "--suite", suite_file(t, SUITE.encode("utf-16")), "--out", str(t), "--no-tracking"],
        r"suite file .*suite.toml is UTF-16 \(it starts with a UTF-16 byte-order mark\); TOML is UTF-8: save it as "
        r"UTF-8$", None),
    "suite-latin1": (
        lambda t: ["run", "--suite", suite_file(t, ('# réglages\n' + SUITE).encode("latin-1")), "--out", str(t),
                   "--no-tracking"],
        r"suite file .*suite.toml, line 1: not UTF-8 \(byte 0xe9\); TOML is UTF-8: save it as UTF-8$", None),
    "suite-empty": (
        lambda t: ["run", "--suite", suite_file(t, b""), "--out", str(t), "--no-tracking"],
        r"suite file .*suite.toml is empty: name at least its strategies and datasets", None),
    "suite-only-comments": (
        lambda t: ["run", "--suite", suite_file(t, b"# to do\n\n"), "--out", str(t), "--no-tracking"],
        r"suite file .*suite.toml is empty", None),
}


def touch(path: Path) -> Path:
    path.write_text("not a folder")
    return path


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a run's setup (its data first) fails the test: every case must be refused before it."""
    import tempbench.train.recipe

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bad input reached training")

    monkeypatch.setattr(tempbench.train.recipe, "build_setup", refuse)


def assert_one_error_line(err: str, command: str, message: str) -> None:
    """Exactly one line on stderr, `tempbench COMMAND: error: ...`, matching `message`, and no traceback."""
    assert err.count("\n") == 1 and err.startswith(f"tempbench {command}: error: "), err
    assert "Traceback" not in err and "a bug" not in err, err
    assert re.search(message, err.rstrip("\n")), err


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_mistake_is_one_line_and_exit_2(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], no_training: None) -> None:
    argv, message, setup = CASES[case]
    args = argv(tmp_path)
    if setup is not None:
        setup(monkeypatch)
    assert main(args) == 2
    assert_one_error_line(capsys.readouterr().err, args[0], message)


def test_a_missing_extra_is_named_with_its_pip_command_before_any_data_loads(
        caption_folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        no_training: None) -> None:
    cache = tmp_path / "cache"
    assert not cache.exists()  # caption_folder points TEMPBENCH_CACHE here; loading the data would fill it
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # `import` raises ImportError: not installed
    assert main(["train", "--strategy", "fixed", "--dataset", caption_folder, "--out", str(tmp_path / "out"),
                 "--no-tracking"]) == 2
    assert_one_error_line(capsys.readouterr().err, "train",
                          r"image–text datasets need the text extra: pip install -e '\.\[text\]' "
                          r"\(sentence_transformers is not installed\)$")
    assert not cache.exists()


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "write .*: No space left on device"),
                                             (errno.EROFS, "write .*: Read-only file system"),
                                             (errno.EACCES, "access .*: Permission denied")])
def test_a_write_that_fails_later_is_one_line_naming_the_file(code: int, words: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A full or read-only disk met after the up-front check (e.g. by the leaderboard's tables) is the user's to
    fix, wherever it is raised: one line naming the file, exit 2."""
    try:
        raise OSError(code, os.strerror(code), "/data/out/leaderboard.md")
    except OSError as exc:
        assert report_failure("tempbench leaderboard", exc) == 2
    assert_one_error_line(capsys.readouterr().err, "leaderboard",
                          f"could not {words.replace('.*', '/data/out/leaderboard.md')}$")
