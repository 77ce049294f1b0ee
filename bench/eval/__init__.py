"""Evaluation protocols on frozen backbone features: weighted kNN, retrieval, linear probe, long-tail groups, τ analytics."""
