"""Temperature strategies for contrastive learning, behind one interface (see `base.Strategy`).

    from tempbench.strategies import Strategy, Step, create_strategy, list_strategies
    s = create_strategy("isogclr", num_samples=N, rho=0.4)
"""

from . import cosine, fixed, isogclr, learnable, linear, sogclr, step  # noqa: F401  (registers the built-ins)
from .base import Step, StepOut, Strategy
from .registry import ENTRY_POINT_GROUP, create_strategy, get_strategy_class, list_strategies, register_strategy

__all__ = [
    "ENTRY_POINT_GROUP",
    "Step",
    "StepOut",
    "Strategy",
    "create_strategy",
    "get_strategy_class",
    "list_strategies",
    "register_strategy",
]
