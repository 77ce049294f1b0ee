"""Pairings: what the two inputs of a contrastive batch are (`base.Pairing`), registered like strategies.

    from tempbench.pairings import get_pairing, list_pairings
    get_pairing("views")          # two augmented views of a labelled image (SimCLR)
    get_pairing("image_text")     # an image and one of its captions (CLIP)

A run's pairing follows from its dataset and is resolved once into `RunConfig.pairing`. A third pairing is one module
with a `Pairing` subclass and `register_pairing(...)`, or a plug-in through the entry-point group
`tempbench.pairings`; the contract tests run over every registered pairing.
"""

from . import image_text, views  # noqa: F401  (registers the built-ins)
from .base import (
    ENTRY_POINT_GROUP,
    Pairing,
    TrainData,
    final_temperatures,
    get_pairing,
    list_pairings,
    register_pairing,
    seed_for,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Pairing",
    "TrainData",
    "final_temperatures",
    "get_pairing",
    "list_pairings",
    "register_pairing",
    "seed_for",
]
