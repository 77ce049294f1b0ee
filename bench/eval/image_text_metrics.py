"""The built-in `image_text` metrics (CLIP-style runs): image→text and text→image recall@1/5/10 and their means on
the test split, the same on the val split (`val_...`, what studies select on), and row fields filled outside an
evaluation (zero-shot classification, τ-vs-density analytics).

Each computes from an `ImageTextEvaluation` (retrieval_text) of one split; build it on the val split's features for
the `val_` metrics. Protocols: README.md, "Evaluation protocols" (the iSogCLR code's `itm_eval`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .metrics import Metric, register_metric

PAIRING = "image_text"
I2T = "image→text: an image hits when any of its captions is among the k most similar of the split's captions"
T2I = "text→image: a caption hits when its image is among the k most similar of the split's images (all captions)"
TIES = "cosine in float32, strict '>' ranks (ties favour the positive)"
# shown by default in the leaderboard and the one-line summary; the other registered numbers stay in the CSV rows
LEADERBOARD = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")  # and r_mean
SUMMARY = ("i2t_r1", "t2i_r1")  # and r_mean


def _retrieval_metrics(prefix: str, split: str, where: str) -> list[Metric]:
    """The nine retrieval numbers of one split: {i2t,t2i}_r{1,5,10}, their means and r_mean."""
    label_prefix = "val " if prefix else ""
    test = split == "test"  # val twins are selection signals: recorded, never on the leaderboard or summary
    # r_mean first: the leaderboard's Δ columns follow the order of its metrics
    out = [Metric(f"{prefix}r_mean", f"{label_prefix}R mean", f"mean of I→T and T→I R mean (iSogCLR's r_mean); "
                  f"{where}", _method("r_mean"), leaderboard=test, summary=test, split=split, pairing=PAIRING)]
    for side, proto, recall in (("i2t", I2T, "i2t_recall"), ("t2i", T2I, "t2i_recall")):
        arrow = "I→T" if side == "i2t" else "T→I"
        for k in (1, 5, 10):
            name = f"{side}_r{k}"
            out.append(Metric(f"{prefix}{name}", f"{label_prefix}{arrow} R@{k}", f"{proto}, k={k}; {where}; {TIES}",
                              _method(recall, k), leaderboard=test and name in LEADERBOARD,
                              summary=test and name in SUMMARY, split=split, pairing=PAIRING))
        out.append(Metric(f"{prefix}{side}_r_mean", f"{label_prefix}{arrow} R mean",
                          f"mean of {arrow} R@1, R@5, R@10; {where}", _method(f"{side}_r_mean"), split=split,
                          pairing=PAIRING))
    return out


def _method(name: str, *args: Any) -> Callable[[Any], float]:
    return lambda ev: getattr(ev, name)(*args)


def _row_fields() -> list[Metric]:
    """Numbers a run's row carries that no retrieval evaluation computes (compute=None)."""
    zs = "zero-shot classification with prompt templates (w_c = normalize(mean_t normalize(embed(template_t(c)))))"
    return [
        Metric("zs_top1", "zero-shot top-1", f"{zs}, top-1 accuracy; the run names the dataset and templates", None,
               split="test", pairing=PAIRING),
        Metric("zs_top5", "zero-shot top-5", f"{zs}, top-5 accuracy (NaN with < 5 classes)", None, split="test",
               pairing=PAIRING),
        Metric("zs_class_avg", "zero-shot class-avg", f"{zs}, mean per-class recall", None, split="test",
               pairing=PAIRING),
        Metric("tau_image_spearman", "τ_I–density Spearman", "Spearman ρ of each training pair's τ_I against its "
               "caption's density (mean cosine to its 10 nearest other-image training captions, frozen MiniLM "
               "space); NaN for global-τ strategies", None, unit="", pairing=PAIRING),
        Metric("tau_text_spearman", "τ_T–density Spearman", "Spearman ρ of each training pair's τ_T against its "
               "caption's density (as tau_image_spearman)", None, unit="", pairing=PAIRING),
    ]


def _register_builtins() -> None:
    for metric in [*_retrieval_metrics("", "test", "the test split"),
                   *_retrieval_metrics("val_", "val", "the val split (for selection)"), *_row_fields()]:
        register_metric(metric)


_register_builtins()
