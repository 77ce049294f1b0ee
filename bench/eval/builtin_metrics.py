"""The built-in `views` metrics: kNN (weighted and unweighted), recall@k and three linear probes, each as top-1,
class-average and per long-tail group, on the test split; and the validation metrics studies select on.

Every classifier is evaluated with the same bank (the run's training split, long-tailed where the dataset is) and
test split (balanced); what differs is written into each metric's `protocol`, because numbers from the
literature are only comparable within one protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .groups import GROUPS
from .metrics import Metric, register_metric

BANK = "bank: the training split"
# classifier id -> (label, protocol, how to get its (Q,) predictions from an Evaluation)
CLASSIFIERS: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "knn200": ("kNN-200", f"weighted kNN, k=200, T=0.1 (InstDisc); {BANK}", lambda ev: ev.knn(200, 0.1)),
    "knn20": ("kNN-20", f"weighted kNN, k=20, T=0.07; {BANK}", lambda ev: ev.knn(20, 0.07)),
    "knn1": ("kNN@1", f"nearest neighbour (Kukleva et al.); {BANK}", lambda ev: ev.knn(1)),
    "knn10": ("kNN@10", f"unweighted 10-NN vote, ties to the nearest (Kukleva et al.); {BANK}",
              lambda ev: ev.knn(10)),
    "linear": ("linear", "linear probe (L-BFGS, λ on a held-out slice) trained on the training split",
               lambda ev: ev.probe_predictions("full")),
    "fewshot": ("few-shot linear", "linear probe on a class-balanced subset of the training split, n = the "
                "smallest class's count per class (Kukleva et al.)", lambda ev: ev.probe_predictions("fewshot")),
    "fullshot": ("full-shot linear", "linear probe on the base dataset's balanced training split after "
                 "pre-training on the long tail (SDCLR/BCL); NaN for balanced datasets",
                 lambda ev: ev.probe_predictions("fullshot")),
}
GROUP_LABELS = {"many": "many (>100)", "medium": "medium (20–100)", "few": "few (<20)", "head": "head third",
                "mid": "mid third", "tail": "tail third"}
LEADERBOARD = ("knn200_top1", "knn1_top1", "knn10_top1", "linear_top1", "linear_class_avg", "fewshot_top1",
               "fullshot_top1")


def _classifier_metrics(cid: str, label: str, protocol: str, predict: Callable[[Any], Any]) -> list[Metric]:
    top1 = Metric(f"{cid}_top1", f"{label} top-1", protocol, lambda ev: ev.accuracy(predict(ev)),
                  leaderboard=f"{cid}_top1" in LEADERBOARD, summary=cid in ("knn200", "linear"))
    avg = Metric(f"{cid}_class_avg", f"{label} class-avg", f"mean per-class accuracy; {protocol}",
                 lambda ev: ev.class_average(predict(ev)), leaderboard=f"{cid}_class_avg" in LEADERBOARD)
    groups = [Metric(f"{cid}_{g}", f"{label} {GROUP_LABELS[g]}", f"accuracy on the {GROUP_LABELS[g]} classes; "
                     f"{protocol}", lambda ev, g=g: ev.group_accuracy(predict(ev), g)) for g in GROUPS]
    return [top1, avg, *groups]


def _register_builtins() -> None:
    for cid, (label, protocol, predict) in CLASSIFIERS.items():
        for metric in _classifier_metrics(cid, label, protocol, predict):
            register_metric(metric)
    for k in (1, 5, 10):
        register_metric(Metric(f"recall_at_{k}", f"recall@{k}", f"a same-class training image among the {k} "
                               f"nearest; {BANK}", lambda ev, k=k: ev.recall(k), summary=k == 1))
    for cid in ("knn200", "knn20", "linear"):
        label, protocol, predict = CLASSIFIERS[cid]
        register_metric(Metric(f"val_{cid}_top1", f"val {label} top-1", f"{protocol}; queries: the slice held out "
                               "from the training split", lambda ev, p=predict: ev.accuracy(p(ev)), split="val"))
    register_metric(Metric("tau_spearman", "τ Spearman", "Spearman ρ of class-mean τ against training images per "
                           "class (per-sample-τ strategies; NaN for the others)", compute=None, unit=""))
    # row fields of both pairings (declared once, for their labels): how often each per-sample state entry (u_i, τ_i)
    # was updated over the run; NaN for strategies without per-sample state
    register_metric(Metric("state_visits_mean", "visits/entry", "updates per per-sample state entry over the run, "
                           "mean over entries (NaN without per-sample state)", compute=None, unit=""))
    register_metric(Metric("state_visits_min", "min visits", "updates of the least-visited state entry over the run",
                           compute=None, unit=""))
    # the τ-at-its-bounds control: a per-sample τ pinned at a bound is a global τ at that bound
    register_metric(Metric("tau_at_min", "share at τ_min", "share of the per-sample τ entries at the strategy's τ_min "
                           "at the end of training (NaN without a per-sample τ)", compute=None, unit=""))
    register_metric(Metric("tau_at_max", "share at τ_max", "share of the per-sample τ entries at the strategy's τ_max "
                           "at the end of training (NaN without a per-sample τ)", compute=None, unit=""))


_register_builtins()
