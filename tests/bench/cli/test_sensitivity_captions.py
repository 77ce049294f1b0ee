"""`tempbench sensitivity` on an image–caption dataset: each strategy's study samples the search space of the class
the dataset's pairing resolves to (isogclr's image_text space, not its views one), an image_text-only strategy
(rgclg) can be studied, and the objective is the val split's r_mean."""

from __future__ import annotations

import csv
import json

import pytest

from tempbench.cli import main

pytestmark = [pytest.mark.usefixtures("quick_probe"),
              pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")]
TINY = {"batch_size": 8, "projector_hidden": 16, "projector_out": 8, "device": "cpu", "threads": 1,
        "optimizer": "adamw", "lr": 1e-3}


def test_a_caption_study_samples_each_strategys_image_text_space(caption_folder, tmp_path, capsys):
    pytest.importorskip("sentence_transformers")
    out = tmp_path / "study"
    settings = [part for k, v in TINY.items() for part in ("--set", f"{k}={json.dumps(v)}")]
    code = main(["sensitivity", "--strategy", "rgclg,isogclr", "--dataset", caption_folder, "--trials", "2",
                 "--epochs", "1", "--no-tracking", "--out", str(out), "--json", *settings])
    assert code == 0, capsys.readouterr().err
    studies = json.loads(capsys.readouterr().out)["studies"]
    assert {name: s["n_complete"] for name, s in studies.items()} == {"rgclg": 2, "isogclr": 2}
    assert {s["metric"] for s in studies.values()} == {"val_r_mean"}  # the pairing's default, not kNN's
    with open(out / "sensitivity-trials-isogclr.csv", newline="") as fh:
        trials = list(csv.DictReader(fh))
    assert len(trials) == 2
    # isogclr's image_text space: ρ in [1, 4.5] (below log(B − 1)), τ_init in [0.005, 0.1]; its views space would
    # have drawn ρ from [0.05, 0.8] and τ_init from [0.05, 1]
    for row in trials:
        assert 1.0 <= float(row["rho"]) <= 4.5 and 0.005 <= float(row["tau_init"]) <= 0.1
