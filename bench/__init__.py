"""tempbench: a benchmark harness for temperature strategies in contrastive self-supervised learning."""

__version__ = "0.1.0"
