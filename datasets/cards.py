"""Dataset cards: one TOML file per named dataset in `cards/`, read strictly (an unknown key is an error)."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any

from .long_tail import check_class_order, check_long_tail

AUGMENT_RECIPES = ("simclr", "digits", "clip")
PAIRINGS = ("views", "image_text")


@dataclass(frozen=True)
class Card:
    """A named dataset: where its images come from and how a run should treat them.

    source:     a source string (`kind:argument`), used when no local copy is found.
    local:      source strings with paths relative to the data directories, tried in order before `source`.
    splits:     expected images per split, e.g. {"train": 50000, "test": 10000}: a partial copy is an error.
    image_size: side S of the square images a run sees; channels: 1 (L) or 3 (RGB).
    mean, std:  per-channel normalisation of images scaled to [0, 1].
    augment:    two-view recipe name (see `tempbench.augment`).
    classes:    class names in label order, where the source only knows numbers (IDX files).
    long_tail:  None, or {"profile": "exp"|"step", "imbalance_factor": r, optionally "n_max": n}, or the balanced
                matched-size cut {"profile": "flat", "n_total": n}; either optionally with "class_order" (which
                class gets which count: "label", "reversed", "permutation:SEED" or a list of class ids).
    pairing:    "views" (labelled images, two augmented views) or "image_text" (images with captions, CLIP-style);
                image_text cards count images per split (train/val/test) and take no classes or long tail.
    captions_per_image: image_text cards only: every split image must have exactly this many captions.
    """

    name: str
    description: str
    source: str
    splits: dict[str, int]
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str
    local: tuple[str, ...] = ()
    classes: tuple[str, ...] | None = None
    long_tail: dict[str, Any] | None = None
    reference: str = ""
    pairing: str = "views"
    captions_per_image: int | None = None

    def __post_init__(self) -> None:
        where = f"card {self.name!r}"
        if self.channels not in (1, 3):
            raise ValueError(f"{where}: channels must be 1 or 3, got {self.channels!r}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"{where}: mean and std need one value per channel ({self.channels})")
        if self.augment not in AUGMENT_RECIPES:
            raise ValueError(f"{where}: unknown augment recipe {self.augment!r}; valid: {', '.join(AUGMENT_RECIPES)}")
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"{where}: image_size must be a positive int, got {self.image_size!r}")
        self._check_pairing(where)
        if self.long_tail is not None:
            self._check_long_tail(where, self.long_tail)

    @staticmethod
    def _check_long_tail(where: str, lt: dict[str, Any]) -> None:
        unknown = sorted(set(lt) - {"profile", "imbalance_factor", "n_max", "n_total", "class_order"})
        if unknown:
            raise ValueError(f"{where}: unknown long_tail key(s) {unknown}")
        profile = lt.get("profile", "exp")
        if "imbalance_factor" not in lt and profile != "flat":
            raise ValueError(f"{where}: long_tail needs imbalance_factor (or profile = \"flat\" with n_total)")
        try:
            check_long_tail(lt.get("imbalance_factor", 1.0), profile, lt.get("n_max"), lt.get("n_total"))
            check_class_order(lt.get("class_order", "label"))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def _check_pairing(self, where: str) -> None:
        if self.pairing not in PAIRINGS:
            raise ValueError(f"{where}: pairing must be one of {PAIRINGS}, got {self.pairing!r}")
        if self.pairing == "views":
            if self.captions_per_image is not None:
                raise ValueError(f"{where}: captions_per_image applies to image_text cards only")
            return
        if self.long_tail is not None or self.classes is not None:
            raise ValueError(f"{where}: an image_text card takes no long_tail or classes (captions are its labels)")
        if not set(self.splits) <= {"train", "val", "test"}:
            raise ValueError(f"{where}: image_text splits are train, val and test, got {sorted(self.splits)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the card."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _card_files() -> dict[str, Any]:
    folder = resources.files("tempbench.datasets") / "cards"
    return {p.name.removesuffix(".toml"): p for p in folder.iterdir() if p.name.endswith(".toml")}


@functools.cache
def _read_card(name: str) -> Card:
    path = _card_files()[name]
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    known = {f.name for f in fields(Card)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"card {name!r} ({path}): unknown key(s) {unknown}; valid: {sorted(known)}")
    if raw.get("name") != name:
        raise ValueError(f"card file {path} declares name {raw.get('name')!r}; it must match the file name")
    for key in ("mean", "std", "local", "classes"):
        if raw.get(key) is not None:
            raw[key] = tuple(raw[key])
    try:
        return Card(**raw)
    except TypeError as exc:  # a missing required key
        raise ValueError(f"card {name!r} ({path}): {exc}") from None


def list_cards() -> list[str]:
    """Sorted names of the shipped dataset cards."""
    return sorted(_card_files())


def get_card(name: str) -> Card:
    """The card called `name`; an unknown name raises ValueError listing the cards."""
    if name not in _card_files():
        raise ValueError(f"unknown dataset card {name!r}; cards: {', '.join(list_cards())}")
    return _read_card(name)
