"""Training: a resolved `RunConfig` -> one run (`recipe`: data, model, strategy, optimiser, loop, evaluation) ->
its result row (`row`).

    from tempbench.train import train
    row = train(config, out_dir=Path("runs/x"))
"""

from tempbench.util import ArtifactWarning

from .recipe import (
    NonFiniteLossError,
    Progress,
    Setup,
    build_setup,
    setup_from_data,
    train,
    train_one_epoch,
    train_step,
)
from .row import run_id

__all__ = [
    "ArtifactWarning",
    "NonFiniteLossError",
    "Progress",
    "Setup",
    "build_setup",
    "run_id",
    "setup_from_data",
    "train",
    "train_one_epoch",
    "train_step",
]
