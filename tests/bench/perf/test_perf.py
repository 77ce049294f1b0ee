"""`tempbench perf`: the full table runs end to end (tiny sizes) and reports every section and ratio; the training
path stays importable without the optional packages; `compile=True` trains. Timings are never asserted."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest
import torch

from tempbench.cli import main
from tempbench.config import resolve_run_config
from tempbench.perf import eval as perf_eval
from tempbench.perf.table import format_full_table
from tempbench.perf.train import synthetic_dataset
from tempbench.strategies import Clock, list_strategies
from tempbench.train import setup_from_data, train_step

TINY = ["--rounds", "1", "--warmup", "0", "--batch-size", "8", "--num-images", "32", "--image-size", "16",
        "--eval-size", "300", "60", "--eval-dim", "16"]
OPTIONAL = ("faiss", "optuna", "mlflow", "pandas", "sklearn", "scipy")


@pytest.fixture
def short_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few L-BFGS iterations: the probe's row is what is tested here, not its accuracy. (Imported here: the
    evaluation package needs pandas and scipy, which a bare GPU machine may lack.)"""
    from tempbench.eval import linear_probe, timing

    monkeypatch.setattr(timing, "linear_probe", functools.partial(linear_probe, max_iter=3))


def run_table(capsys: pytest.CaptureFixture[str], device: str, *extra: str) -> dict:
    assert main(["perf", "--quick", "--device", device, "--json", *TINY, *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.usefixtures("short_probe")
def test_quick_cpu_table_has_every_section_and_ratio(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    result = run_table(capsys, "cpu", "--out", str(tmp_path))
    assert json.loads((tmp_path / "perf.json").read_text()) == result
    assert "goals:" in (tmp_path / "perf.txt").read_text()
    assert {"device_name", "torch", "threads", "date", "load_average"} <= set(result["machine"])
    train = result["train"]
    names = [r["name"] for r in train["rows"]]
    strategies = ["fixed", *[s for s in list_strategies(pairing="views") if s != "fixed"]]
    assert names == ["encoder", "augment", *[f"step {s}" for s in strategies]]
    assert all(r["ms"] > 0 and r["views_per_s"] > 0 for r in train["rows"])
    assert all(r["overhead_vs_fixed"] > 0 for r in train["rows"] if r["name"].startswith("step "))
    assert train["pipeline_efficiency"] > 0 and train["views_per_s"] > 0 and train["precision"] == "float32"
    knn = {r["backend"]: r for r in result["eval"]["knn"]}
    assert set(knn) == {"faiss-cpu", "torch-cpu", "sklearn-brute"}
    assert all(r["note"] is None and r["total_s"] > 0 and r["speedup_vs_sklearn"] > 0 for r in knn.values())
    assert result["eval"]["linear_probe"]["seconds"] > 0
    metrics = {g["metric"] for g in result["goals"]}
    assert {"pipeline efficiency", "views/s (step fixed)", "kNN faiss-cpu", "kNN torch-cpu"} <= metrics
    assert {f"overhead {s} ÷ fixed" for s in list_strategies(pairing="views") if s != "fixed"} <= metrics
    text = format_full_table(result)
    assert "goals:" in text and "pipeline efficiency" in text and "linear probe" in text


def test_strategies_subcommand_honours_options_before_and_after_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "--json", "--rounds", "1", "strategies", "--batch-sizes", "16", "--strategies",
                 "isogclr"]) == 0
    result = json.loads(capsys.readouterr().out)  # --json before the sub-command is not overwritten
    assert [r["strategy"] for r in result["rows"]] == ["fixed", "isogclr"]
    assert result["rows"][0]["ratio_to_fixed"] == 1.0
    assert result["rounds"] == 1 and result["device"] == "cpu"
    assert main(["perf", "strategies", "--json", "--rounds", "1", "--batch-sizes", "16", "--strategies",
                 "fixed"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][0]["strategy"] == "fixed"
    if not torch.cuda.is_available():  # the parent's --device reaches the sub-command: an honest error here
        assert main(["perf", "--device", "cuda", "--json", "strategies", "--batch-sizes", "16"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_missing_optional_backends_give_notes_not_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perf_eval, "installed", lambda module: module not in ("faiss", "sklearn"))
    rows = {r["backend"]: r for r in perf_eval.time_knn(torch.device("cpu"), 200, 40, 8)}
    assert rows["faiss-cpu"]["note"] == "faiss not installed"
    assert rows["sklearn-brute"]["note"] == "scikit-learn not installed"
    assert rows["torch-cpu"]["total_s"] > 0 and rows["torch-cpu"]["speedup_vs_sklearn"] is None


def test_training_path_imports_without_optional_packages() -> None:
    code = ("import sys, tempbench.perf.train, tempbench.perf.eval, tempbench.perf.table, tempbench.train;"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def one_step(compile: bool, device: str = "cpu") -> tuple[float, list[str]]:
    """Loss of one `train_step` on synthetic images, and the model's state-dict keys."""
    config = resolve_run_config("isogclr", "cifar10", settings={
        "encoder": "small_cnn", "batch_size": 8, "device": device, "progress": False, "compile": compile,
        "projector_hidden": 16, "projector_out": 8})
    torch.manual_seed(0)
    setup = setup_from_data(config, synthetic_dataset(32, image_size=16), torch.device(device))
    out = train_step(setup, torch.arange(8, device=device), Clock(step=0, epochs=1, steps_per_epoch=4),
                     torch.Generator(device=device).manual_seed(0))
    return float(out.loss.detach()), list(setup.model.state_dict())


def test_compile_is_an_execution_setting_not_an_experiment_setting() -> None:
    compiled = resolve_run_config("fixed", "digits", settings={"compile": True})
    assert compiled.hash() == resolve_run_config("fixed", "digits").hash()  # seeds group across eager and compiled


@pytest.mark.slow  # ~55 s here: inductor compiles the small CNN's forward and backward on first use
def test_compiled_step_trains_and_keeps_the_state_dict_keys() -> None:
    eager_loss, eager_keys = one_step(compile=False)
    compiled_loss, compiled_keys = one_step(compile=True)
    assert compiled_keys == eager_keys
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.usefixtures("short_probe")
def test_quick_cuda_table(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_table(capsys, "cuda", "--encoder", "resnet18", "--strategies", "fixed,isogclr")
    assert result["train"]["precision"] == "bf16 autocast" and result["train"]["channels_last"]
    assert {r["backend"] for r in result["eval"]["knn"]} >= {"faiss-cpu", "faiss-gpu", "torch-cuda", "sklearn-brute"}
    assert result["eval"]["linear_probe"]["device"].startswith("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_step_on_cuda() -> None:
    loss, keys = one_step(compile=True, device="cuda")
    assert torch.isfinite(torch.tensor(loss)) and "backbone.body.0.0.weight" in keys
