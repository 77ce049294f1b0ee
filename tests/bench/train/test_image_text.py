"""Image–text training end to end on a tiny caption folder (the tsv: layout Flickr8k uses): the pairing follows from
the dataset, state is per (image, caption) pair, a batch never holds two captions of one image, and the row holds
retrieval both ways and τ against caption density. The frozen MiniLM text tower comes from the `text` extra."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tempbench.cli import main
from tempbench.config import resolve_run_config
from tempbench.train import build_setup

pytest.importorskip("sentence_transformers")

WORDS = ["dog", "cat", "red car", "beach", "child", "bike", "tree", "boat"]
SPLITS = {"train": [f"t{i}" for i in range(16)], "val": ["v0", "v1", "v2", "v3"], "test": ["s0", "s1", "s2", "s3"]}
SMOKE = {"epochs": 1, "batch_size": 8, "projector_hidden": 32, "projector_out": 16, "device": "cpu",
         "progress": False, "optimizer": "adamw", "lr": 1e-3}


@pytest.fixture
def captions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """24 16-px images in three splits, 3 captions each: `tsv:PATH`."""
    monkeypatch.setenv("TEMPBENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "caps"
    (root / "images").mkdir(parents=True)
    (root / "splits").mkdir()
    rows = ["image_id\tcaption_index\tcaption"]
    for n, image_id in enumerate(i for ids in SPLITS.values() for i in ids):
        pixel = (30 * n % 256, 255 - 20 * n % 256, 9 * n % 256)
        Image.new("RGB", (16, 16), pixel).save(root / "images" / f"{image_id}.png")
        rows += [f"{image_id}\t{c}\ta {WORDS[(n + c) % 8]} next to a {WORDS[n % 8]} ." for c in range(3)]
    (root / "captions.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for split, ids in SPLITS.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return f"tsv:{root}"


def test_pairs_are_per_caption_and_batches_hold_each_image_once(captions: str) -> None:
    setup = build_setup(resolve_run_config("isogclr", captions, settings=SMOKE))
    assert setup.config.pairing.name == "image_text" and setup.strategy.num_samples == 48  # 16 images × 3 captions
    assert setup.strategy.temperatures().shape == (48, 2)
    for epoch in range(3):
        order = setup.pairing.epoch_order(setup.train, 0, epoch)
        images = setup.train.pairs.images[order[:16]]
        assert len(set(images.tolist())) == 16  # one caption of every image an epoch: never two of one image
    pairs = setup.train.pairs
    drawn = {int(c) for e in range(20) for c in pairs.captions[setup.pairing.epoch_order(setup.train, 0, e)]}
    assert len(drawn) == 48  # over epochs every caption is drawn


def test_train_cli_just_works_on_an_image_caption_dataset(captions: str, tmp_path: Path, capsys) -> None:
    settings = [part for k, v in SMOKE.items() if k != "epochs" for part in ("--set", f"{k}={json.dumps(v)}")]
    code = main(["train", "--strategy", "isogclr", "--dataset", captions, "--epochs", "1", "--out",
                 str(tmp_path / "out"), "--no-tracking", "--json", *settings])
    assert code == 0
    row = json.loads(capsys.readouterr().out)
    assert row["pairing"] == "image_text" and row["num_train"] == 48 and row["num_train_images"] == 16
    for key in ("i2t_r1", "i2t_r5", "t2i_r10", "r_mean", "val_r_mean"):
        assert 0.0 <= row[key] <= 100.0, key
    assert "tau_image_spearman" in row and "knn200_top1" not in row
    tau = next((tmp_path / "out" / "tau").iterdir())
    assert {p.name for p in tau.iterdir()} >= {"tau_per_pair.csv", "tau_vs_density.png"}


def test_a_views_only_strategy_is_refused_for_image_text(captions: str) -> None:
    with pytest.raises(ValueError, match="supports pairings \\['views'\\], not 'image_text'"):
        resolve_run_config("cosine", captions)
