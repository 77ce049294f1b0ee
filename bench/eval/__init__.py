"""Evaluation protocols on frozen backbone features: kNN (weighted and unweighted), retrieval, linear probes,
long-tail groups and τ analytics, with the metric registry every result row reads (`metrics`)."""

from .evaluate import Evaluation, LabelledFeatures, balanced_subset, evaluate
from .features import extract_features, normalize_features, prepare_features, snap_features
from .groups import GROUPS, group_accuracy, group_metrics, per_class_accuracy
from .knn import knn_predict, majority_predict
from .linear import ProbeResult, linear_probe, stratified_split
from .metrics import Metric, get_metric, list_metrics, metric_label, register_metric, summary_line
from .neighbors import BACKENDS, Neighbors, resolve_backend, search_neighbors
from .retrieval import RECALL_KS, recall_at_k
from .tau import class_spearman, save_tau_figure, summarize_tau, tau_row_fields

__all__ = [
    "BACKENDS",
    "GROUPS",
    "RECALL_KS",
    "Evaluation",
    "LabelledFeatures",
    "Metric",
    "Neighbors",
    "ProbeResult",
    "balanced_subset",
    "class_spearman",
    "evaluate",
    "extract_features",
    "get_metric",
    "group_accuracy",
    "group_metrics",
    "knn_predict",
    "linear_probe",
    "list_metrics",
    "majority_predict",
    "metric_label",
    "normalize_features",
    "per_class_accuracy",
    "prepare_features",
    "recall_at_k",
    "register_metric",
    "resolve_backend",
    "save_tau_figure",
    "search_neighbors",
    "snap_features",
    "stratified_split",
    "summarize_tau",
    "summary_line",
    "tau_row_fields",
]
