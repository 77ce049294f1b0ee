"""Temperature strategies for contrastive learning, behind one interface (see `base.Strategy`; the maths of each
one is in README.md next to this file). The registry is keyed by (name, pairing): "views" (two augmented views of
each sample) or "image_text" (an image and its caption).

    from tempbench.strategies import Clock, Strategy, create_strategy, list_strategies
    s = create_strategy("isogclr", num_samples=N, rho=0.4)
    t = create_strategy("isogclr", num_samples=N, pairing="image_text")
"""

from . import (  # noqa: F401  (registers the built-ins)
    cosine,
    dcl,
    dystress,
    fixed,
    isogclr,
    isogclr_image_text,
    learnable,
    linear,
    macl,
    piecewise,
    rgclg,
    siglip,
    sogclr,
    sogclr_image_text,
    tau_free,
    tau_uncertainty,
    tempnet,
)
from .base import PAIRINGS, Clock, StepOut, Strategy, rows_of, set_rows, tau_shape
from .global_tau import GlobalTauStrategy
from .registry import (
    ENTRY_POINT_GROUP,
    create_strategy,
    get_strategy_class,
    list_strategies,
    register_strategy,
    reserve_hyperparameter_names,
    strategy_pairings,
)
from .spec import check_choice, check_range, frozen, log_uniform, uniform

__all__ = [
    "ENTRY_POINT_GROUP",
    "PAIRINGS",
    "Clock",
    "GlobalTauStrategy",
    "StepOut",
    "Strategy",
    "check_choice",
    "check_range",
    "create_strategy",
    "frozen",
    "get_strategy_class",
    "list_strategies",
    "log_uniform",
    "register_strategy",
    "reserve_hyperparameter_names",
    "rows_of",
    "set_rows",
    "strategy_pairings",
    "tau_shape",
    "uniform",
]
