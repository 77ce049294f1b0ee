"""Evaluation protocols on frozen backbone features: weighted kNN, retrieval, linear probe, long-tail groups and
τ analytics. `evaluate_features` runs them all for one run's result row."""

from .evaluate import GROUPS, evaluate_features
from .features import normalize_features, prepare_features, snap_features
from .groups import group_metrics, per_class_accuracy, shot_groups, third_groups
from .knn import PROTOCOLS, knn_predict
from .linear import ProbeResult, linear_probe, stratified_split
from .neighbors import BACKENDS, Neighbors, resolve_backend, search_neighbors
from .retrieval import RECALL_KS, recall_at_k
from .tau import class_spearman, save_tau_figure, summarize_tau, tau_row_fields
from .timing import time_knn_backends, time_linear_probe

__all__ = [
    "BACKENDS",
    "GROUPS",
    "PROTOCOLS",
    "RECALL_KS",
    "Neighbors",
    "ProbeResult",
    "class_spearman",
    "evaluate_features",
    "group_metrics",
    "knn_predict",
    "linear_probe",
    "normalize_features",
    "per_class_accuracy",
    "prepare_features",
    "recall_at_k",
    "resolve_backend",
    "save_tau_figure",
    "search_neighbors",
    "shot_groups",
    "snap_features",
    "stratified_split",
    "summarize_tau",
    "tau_row_fields",
    "third_groups",
    "time_knn_backends",
    "time_linear_probe",
]
