"""Evaluation timings for `tempbench perf`: kNN backends (FAISS CPU, FAISS GPU where faiss has GPU support, torch on
the device) against scikit-learn's brute-force `KNeighborsClassifier` as the yardstick, and the linear probe, all on
random L2-normalised features (`tempbench.eval.timing`).

faiss and scikit-learn are optional here: a backend that is not installed gives a row with a note instead of a time,
so the table also runs on a bare GPU machine.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from .train import timing_bar

KNN_K = 200  # the final evaluation's kNN protocol (k=200, T=0.1)


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


def faiss_has_gpu() -> bool:
    """Whether FAISS can search on a GPU here: faiss installed, CUDA available, and a GPU build that sees a GPU."""
    if not (installed("faiss") and torch.cuda.is_available()):
        return False
    import faiss

    # faiss-cpu wheels ship the same module without the GPU classes
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def knn_plan(device: torch.device) -> list[tuple[str, str, str]]:
    """(label, backend, device) rows to time, in order; sklearn, the yardstick, always on the CPU."""
    plan = [("faiss-cpu", "faiss", "cpu")]
    if device.type == "cuda":
        plan.append(("faiss-gpu", "faiss", str(device)))
    plan += [(f"torch-{device.type}", "torch", str(device)), ("sklearn-brute", "sklearn", "cpu")]
    return plan


def missing_note(backend: str, device: str) -> str | None:
    """Why a row cannot run here, or None."""
    if backend == "faiss" and not installed("faiss"):
        return "faiss not installed"
    if backend == "faiss" and device != "cpu" and not faiss_has_gpu():
        return "faiss has no GPU support here"
    if backend == "sklearn" and not installed("sklearn"):
        return "scikit-learn not installed"
    return None


def time_knn(device: torch.device, n_train: int, n_test: int, dim: int, bar: Any = None) -> list[dict[str, Any]]:
    """One row per planned backend (`knn_plan`): {backend, device, note, search_s, total_s, speedup_vs_sklearn}, with
    seconds for k=KNN_K, T=0.1 on n_train × n_test random features of width dim; a note instead of times where the
    backend is missing. speedup_vs_sklearn = sklearn's seconds ÷ the row's total (None without both). `bar`: a
    progress bar advanced after each backend."""
    from tempbench.eval.timing import time_knn_backends  # optional dependencies, as in time_evaluation
    rows = []
    for label, backend, where in knn_plan(device):
        note = missing_note(backend, where)
        row: dict[str, Any] = {"backend": label, "device": where, "note": note}
        if note is None:
            (timed,) = time_knn_backends(n_train, n_test, dim, k=KNN_K, backends=[backend], device=where)
            # sklearn has no separate total: its fit + predict is the whole kNN, and the yardstick below reads total_s
            row |= {"search_s": timed["search_s"], "total_s": timed["total_s"] or timed["search_s"]}
        rows.append(row)
        if bar is not None:
            bar.update(1)
    yardstick = next((r.get("total_s") for r in rows if r["backend"] == "sklearn-brute"), None)
    for row in rows:
        seconds = row.get("total_s")
        row["speedup_vs_sklearn"] = yardstick / seconds if yardstick and seconds else None
    return rows


def time_evaluation(device: torch.device, n_train: int, n_test: int, dim: int,
                    progress: bool = False) -> dict[str, Any]:
    """kNN rows and the linear probe on (n_train, n_test) × dim random features; a note instead where the
    evaluation package cannot be imported (it needs pandas and scipy). `progress`: a bar over the rows."""
    try:
        from tempbench.eval.timing import time_linear_probe  # needs pandas and scipy, absent on a bare GPU box
    except ImportError as err:
        return {"note": f"evaluation skipped: {err.name} not installed", "knn": [], "linear_probe": None}
    desc = f"evaluation (kNN backends, linear probe; {n_train:,} × {n_test:,})"
    with timing_bar(len(knn_plan(device)) + 1, desc, progress, unit="row") as bar:
        knn = time_knn(device, n_train, n_test, dim, bar)
        probe = time_linear_probe(n_train, n_test, dim, device=str(device))
        bar.update(1)
    return {"n_train": n_train, "n_test": n_test, "dim": dim, "k": KNN_K, "knn": knn,
            "linear_probe": {"device": str(device), **probe}}
