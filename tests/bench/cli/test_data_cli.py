"""`tempbench data list` and `tempbench data show`, through `tempbench.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tempbench.cli import main


def test_show_digits_lt_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "show", "digits-lt", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["class_counts"] == [142, 113, 87, 67, 52, 40, 31, 24, 18, 14] and out["train_size"] == 588
    assert out["test_size"] == 360 and out["test_class_counts"][0] == 36 and len(out["lt_hash"]) == 12
    assert out["long_tail"]["imbalance_factor"] == 0.1 and set(out["class_groups"]) >= {"many", "few", "tail"}


def test_show_text_and_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "show", "sklearn:digits", "--long-tail", "0.5", "--image-size", "16", "--subset-seed",
                 "3"]) == 0
    out = capsys.readouterr().out
    assert "1x16x16" in out and "imbalance factor 0.5" in out and "seed 3" in out and "hash" in out


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "cifar100-lt" in out and "imagefolder:PATH" in out and "idx:PATH" in out
    assert main(["data", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["cards"]) == 13  # 11 views cards + flickr8k at 64 and 128 px


def test_views_png_goes_into_the_out_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "show", "digits", "--views", "--out", str(tmp_path)]) == 0
    views = tmp_path / "views.png"
    assert views.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(views) in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["data", "show", "mnist"], "unknown dataset card or source 'mnist'"),
    (["data", "show", "digits", "--long-tail", "0"], "must be in (0, 1]"),
    (["data", "show", "imagefolder:/no/such/folder"], "does not exist"),
    (["data", "show", "digitz"], "did you mean 'digits'"),
])
def test_user_errors_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("tempbench data: error:")
