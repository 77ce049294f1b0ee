"""An optional extra that is not installed is one line on the command line — `tempbench CMD: error: ... pip install
-e '.[EXTRA]'`, exit code 2, no traceback, no "a bug" — wherever the `MissingExtra` is raised, and also when a
library wrapped it in an error of its own. A module is made "not installed" with `sys.modules[name] = None`, which
makes `import name` raise ImportError."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest

from tempbench.cli import main, report_failure
from tempbench.datasets import load_dataset
from tempbench.study.storage import open_storage
from tempbench.util import MissingExtra


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make each module look uninstalled for the rest of the test."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def assert_one_line(err: str, command: str, extra: str) -> None:
    assert err.count("\n") == 1 and err.startswith(f"tempbench {command}: error: "), err
    assert f"pip install -e '.[{extra}]'" in err and "Traceback" not in err and "a bug" not in err


def test_postgresql_storage_without_psycopg_names_the_servers_extra(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    hide(monkeypatch, "psycopg", "psycopg2")
    assert main(["leaderboard", "--storage", "postgresql://bench@127.0.0.1/optuna"]) == 2
    assert_one_line(capsys.readouterr().err, "leaderboard", "servers")


def test_a_url_that_names_psycopg_is_the_same_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "psycopg")
    with pytest.raises(MissingExtra, match=r"^PostgreSQL storage needs the servers extra: .*\(psycopg is not"):
        open_storage("postgresql+psycopg://bench@127.0.0.1:1/optuna", heartbeat=None)


def test_wds_source_without_webdataset_names_the_text_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    hide(monkeypatch, "braceexpand")  # webdataset's own dependency: the first import the wds: source needs
    assert main(["data", "show", f"wds:{tmp_path}/shard-{{0..1}}.tar"]) == 2
    assert_one_line(capsys.readouterr().err, "data", "text")


def test_wds_shards_found_but_webdataset_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    shard = tmp_path / "shard-0.tar"
    with tarfile.open(shard, "w"):
        pass
    hide(monkeypatch, "webdataset", "webdataset.tariterators")
    with pytest.raises(MissingExtra, match=r"^the wds: source needs the text extra: .*\(webdataset is not"):
        load_dataset(f"wds:{shard}")


@pytest.mark.parametrize("explicit", [True, False], ids=["cause", "context"])
def test_a_missing_extra_wrapped_by_a_library_is_still_one_line(explicit: bool,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    try:
        try:
            raise MissingExtra("the wds: source", "text", missing="webdataset", verb="needs")
        except ImportError as exc:
            if explicit:
                raise RuntimeError("plug-in failed to load") from exc
            raise RuntimeError("plug-in failed to load")  # noqa: B904  (the implicit __context__ is the point)
    except RuntimeError as wrapped:
        assert report_failure("tempbench data", wrapped) == 2
    assert_one_line(capsys.readouterr().err, "data", "text")


def test_any_other_import_error_is_still_reported_as_a_bug(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import a_module_nobody_installed  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        assert report_failure("tempbench data", exc) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "a bug" in err
