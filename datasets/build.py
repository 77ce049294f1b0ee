"""`load_dataset`: a card name or a source string -> an `ImageDataset` (uint8 tensors on the CPU, long-tail cut done),
or a `CaptionDataset` for image_text cards and sources (`dataset_pairing` says which, from the string alone).

Every argument is checked before any image is read; a card's local copies are tried before its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tempbench.util import did_you_mean

from .caption_build import load_caption_dataset
from .captions import CaptionDataset
from .cards import Card, get_card, list_cards
from .long_tail import check_class_order, check_long_tail, class_groups, long_tail_indices
from .prepare import channel_stats, check_choices, read_card_source
from .sources import list_sources, load_source, parse_source, select_variant
from .splits import RawSplits, to_channels, to_size


@dataclass
class ImageDataset:
    """A dataset ready for a run. Images are contiguous uint8 (N, C, S, S) CPU tensors, labels int64 (N,).

    train_* holds the training split after the long-tail cut (train_indices: the kept rows of the source's training
    split); test_* is the balanced test split, untouched. class_counts: training images per class after the cut;
    lt_hash: short hash of the kept indices (of all indices for balanced data); long_tail: None or
    {"profile", "imbalance_factor", "n_max", "seed"}, plus "n_total" for the flat profile and "class_order" when it
    is not "label" (so the description of every earlier cut is unchanged). mean/std: per-channel normalisation of
    [0, 1] images.
    """

    name: str
    source: str
    origin: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    train_indices: torch.Tensor
    classes: list[str]
    class_counts: list[int]
    lt_hash: str
    long_tail: dict[str, Any] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str
    image_size: int
    # the source's whole training split when a long-tail cut was made (the full-shot probe trains on it), else None
    uncut_train_images: torch.Tensor | None = None
    uncut_train_labels: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        """C: every class of the source, also one the long-tail cut left small (never empty: that is an error)."""
        return len(self.classes)

    @property
    def channels(self) -> int:
        """1 (grayscale) or 3 (RGB), as the images are stored."""
        return int(self.train_images.shape[1])

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: sizes, per-class counts, long-tail profile and hash, class groups."""
        test_counts = torch.bincount(self.test_labels, minlength=self.num_classes).tolist()
        return {"name": self.name, "source": self.source, "origin": self.origin, "image_size": self.image_size,
                "channels": self.channels, "num_classes": self.num_classes, "train_size": len(self.train_labels),
                "test_size": len(self.test_labels), "classes": self.classes, "class_counts": self.class_counts,
                "test_class_counts": test_counts, "lt_hash": self.lt_hash, "long_tail": self.long_tail,
                "mean": list(self.mean), "std": list(self.std), "augment": self.augment,
                "class_groups": class_groups(self.class_counts)}


def load_dataset(spec: str, long_tail: float | None = None, image_size: int | None = None, seed: int = 0, *,
                 profile: str | None = None, n_max: int | None = None, n_total: int | None = None,
                 class_order: str | list[int] | None = None, channels: int | None = None,
                 augment: str | None = None, **source_options: Any) -> ImageDataset | CaptionDataset:
    """Load a dataset card ("cifar10-lt") or a source string ("imagefolder:PATH", "hf:NAME?label=fine_label").

    long_tail: None = as the card says (no cut without a card); r in (0, 1] = that imbalance factor (1.0: balanced).
    profile ("exp"/"step"/"flat"), n_max, n_total (flat) and class_order refine the cut, each None = the card's;
    seed (a run's subset seed) picks each class's kept images.
    image_size and channels default to the card's (else to the source's own).
    source_options go to the source loader (e.g. image=, label=).
    Image–caption cards and sources ("flickr8k", "tsv:PATH", "wds:PATTERN", "hf:NAME?caption=COL") give a
    `CaptionDataset` instead; they take no long-tail cut.
    """
    card = resolve_card(spec)
    if _pairing(card, spec, source_options) == "image_text":
        if n_total is not None or class_order is not None:
            raise ValueError("n_total and class_order shape a labelled training split; captions take no cut")
        return load_caption_dataset(spec, card, image_size=image_size, channels=channels, augment=augment,
                                    long_tail=long_tail, profile=profile, n_max=n_max, options=source_options)
    lt = resolve_long_tail(card, long_tail, profile, n_max, seed, n_total=n_total, class_order=class_order)
    check_choices(image_size, channels, augment)
    size = image_size or (card.image_size if card else None)
    chans = channels or (card.channels if card else None)
    raw = read_card_source(card, source_options, size, chans) if card else load_source(spec, source_options,
                                                                                          size, chans)
    if card:
        check_split_sizes(card, raw)
    return assemble(spec, card, raw, lt, size, chans, augment)


def dataset_pairing(spec: str) -> str:
    """"views" or "image_text" for a card name or a source string, read from the card or the string alone (no
    data is loaded); an unknown name raises as `load_dataset` would. hf: is image_text when the string sets
    caption=COL."""
    return _pairing(resolve_card(spec), spec, {})


def _pairing(card: Card | None, spec: str, options: dict[str, Any]) -> str:
    if card is not None:
        return card.pairing
    source, _, query = parse_source(spec)
    return select_variant(source, {**query, **options}).pairing


def resolve_card(spec: str) -> Card | None:
    """The card named `spec`, None for a valid source string; anything else lists the cards and source kinds."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"dataset must be a card name or a source string, got {spec!r}")
    if ":" in spec:
        parse_source(spec)
        return None
    if spec not in list_cards():
        kinds = ", ".join(s.name + ":..." for s in list_sources())
        raise ValueError(f"unknown dataset card or source {spec!r}{did_you_mean(spec, list_cards())}; cards: "
                         f"{', '.join(list_cards())}; source kinds: {kinds}")
    return get_card(spec)


def resolve_long_tail(card: Card | None, long_tail: float | None, profile: str | None, n_max: int | None,
                      seed: int, *, n_total: int | None = None,
                      class_order: str | list[int] | None = None) -> dict[str, Any] | None:
    """The long-tail cut to make (None: keep everything), from the card and the overrides (None: the card's);
    range-checked here. A class order given for data left uncut is an error; a card's own order is dropped when an
    override (long_tail=1.0) leaves the data uncut."""
    base = dict(card.long_tail) if card is not None and card.long_tail is not None else None
    if long_tail is None and base is None and n_total is None:
        if profile is not None or n_max is not None or class_order not in (None, "label"):
            raise ValueError("profile, n_max and class_order need an imbalance factor (long_tail=r) or the flat "
                             "profile's n_total; this dataset is balanced")
        return None
    if isinstance(long_tail, bool) or not isinstance(seed, int):
        raise ValueError(f"long_tail must be a float in (0, 1] and seed an int, got {long_tail!r} and {seed!r}")
    base = base or {}
    lt = {"profile": profile or base.get("profile", "exp"),
          "imbalance_factor": float(long_tail) if long_tail is not None else float(base.get("imbalance_factor", 1.0)),
          "n_max": n_max if n_max is not None else base.get("n_max"), "seed": seed}
    total = n_total if n_total is not None else base.get("n_total")
    order = class_order if class_order is not None else base.get("class_order", "label")
    check_long_tail(lt["imbalance_factor"], lt["profile"], lt["n_max"], total)
    check_class_order(order)
    if lt["imbalance_factor"] == 1.0 and lt["n_max"] is None and total is None:
        if class_order not in (None, "label"):
            raise ValueError(f"class_order {class_order!r} orders the classes of a cut, and this one keeps every "
                             "image: set long_tail < 1, n_max or the flat profile's n_total")
        return None
    return {**lt, **({"n_total": total} if total is not None else {}),
            **({"class_order": order} if order != "label" else {})}


def check_split_sizes(card: Card, raw: RawSplits) -> None:
    """A partial or wrong copy (a class folder missing, a truncated file) fails here, not as odd accuracies."""
    found = {"train": len(raw.train_labels), "test": len(raw.test_labels)}
    for split, expected in card.splits.items():
        if found.get(split) != expected:
            raise ValueError(f"dataset card {card.name!r} expects {expected} {split} images, {raw.origin} holds "
                             f"{found.get(split)}")
    if card.classes is not None and len(card.classes) != len(raw.classes):
        raise ValueError(f"dataset card {card.name!r} names {len(card.classes)} classes, {raw.origin} has "
                         f"{len(raw.classes)}")


def assemble(spec: str, card: Card | None, raw: RawSplits, lt: dict[str, Any] | None, size: int | None,
             channels: int | None, augment: str | None) -> ImageDataset:
    """Bring images to size and channels, cut the long tail, attach normalisation and the augmentation recipe."""
    train, test = raw.train_images, raw.test_images
    if channels:
        train, test = to_channels(train, channels), to_channels(test, channels)
    size = size or min(train.shape[-2:])  # square images: the shorter side, as image folders do
    train, test = to_size(train, size), to_size(test, size)
    classes = list(card.classes) if card is not None and card.classes is not None else raw.classes
    labels = raw.train_labels.numpy()
    cut = (long_tail_indices(labels, lt["imbalance_factor"], lt["profile"], lt["n_max"], lt["seed"], classes,
                             n_total=lt.get("n_total"), class_order=lt.get("class_order", "label"))
           if lt else long_tail_indices(labels, 1.0, classes=classes))
    keep = torch.from_numpy(cut.indices)
    if card is not None and card.channels == train.shape[1]:
        mean, std = card.mean, card.std
    else:  # no card (or another channel count): statistics of the whole training split, the same for every cut
        mean, std = channel_stats(train)
    return ImageDataset(
        name=spec, source=card.source if card else spec, origin=raw.origin,
        train_images=train[keep].contiguous(), train_labels=raw.train_labels[keep].contiguous(),
        test_images=test.contiguous(), test_labels=raw.test_labels.contiguous(), train_indices=keep,
        classes=classes, class_counts=cut.class_counts, lt_hash=cut.hash,
        long_tail=None if lt is None else {**lt, "n_max": lt["n_max"] or largest_class(lt, labels, cut.class_counts)},
        mean=tuple(mean), std=tuple(std), augment=augment or (card.augment if card else raw.augment_hint),
        image_size=size, uncut_train_images=train.contiguous() if lt else None,
        uncut_train_labels=raw.train_labels.contiguous() if lt else None)


def largest_class(lt: dict[str, Any], labels: np.ndarray, kept: list[int]) -> int:
    """The n_max a cut records when none was given: the source's largest class (the scale of the exp and step
    profiles), or the largest class kept by the flat profile, which has no scale but n_total."""
    return max(kept) if lt["profile"] == "flat" else int(np.bincount(labels).max())
