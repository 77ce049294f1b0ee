"""Training: a resolved `RunConfig` -> `Setup` (data, encoder, strategy, optimiser) -> epochs -> result row.

    from tempbench.train import train
    row = train(config, out_dir=Path("runs/x"))
"""

from .artifacts import ArtifactWarning
from .loop import NonFiniteLossError, train_one_epoch, train_step
from .row import TauReport, evaluate_run
from .run import Progress, run_id, train
from .setup import Setup, build_setup, setup_from_data

__all__ = [
    "ArtifactWarning",
    "NonFiniteLossError",
    "Progress",
    "Setup",
    "TauReport",
    "build_setup",
    "evaluate_run",
    "run_id",
    "setup_from_data",
    "train",
    "train_one_epoch",
    "train_step",
]
