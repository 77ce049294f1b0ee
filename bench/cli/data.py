"""`tempbench data list` and `tempbench data show`: the dataset cards and source kinds, and what a card or source
string loads to (split sizes, training images per class after the long-tail cut, the cut's hash), optionally with a
PNG grid of augmented view pairs (`--views`, written to DIR/views.png)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from tempbench.augment import TwoViewAugment
from tempbench.datasets import get_card, list_cards, list_sources, load_dataset
from tempbench.figures import closing_figure, pyplot_agg, save_figure

from .common import print_json

GRID_IMAGES = 8  # view pairs in the --views figure


def list_(args: argparse.Namespace) -> int:
    """`tempbench data list`: the shipped cards and the source kinds with their options (`--json` for both)."""
    cards = [get_card(name) for name in list_cards()]
    if args.json:
        print_json({"cards": [c.to_dict() for c in cards],
                    "source_kinds": {s.name: {"help": s.help, "options": s.options} for s in list_sources()}})
        return 0
    print("cards:")
    width = max(len(c.name) for c in cards)
    for card in cards:
        print(f"  {card.name:<{width}}  {card.description}")
    print("source kinds (load any without a card):")
    for source in list_sources():
        options = f"  [options: {', '.join(source.options)}]" if source.options else ""
        print(f"  {source.help}{options}")
    return 0


def show(args: argparse.Namespace) -> int:
    """`tempbench data show SPEC`: load the dataset as a run would and print its summary; `--views` also writes
    DIR/views.png."""
    ds = load_dataset(args.dataset, long_tail=args.long_tail, image_size=args.image_size, seed=args.subset_seed)
    summary = ds.summary()
    if args.views:
        path = Path(args.out) / "views.png"
        write_views(ds, path, args.subset_seed)
        summary["views"] = str(path)
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def format_summary(s: dict[str, Any]) -> str:
    """The human-readable form of `ImageDataset.summary()`."""
    lt = s["long_tail"]
    cut = (f"{lt['profile']} profile, imbalance factor {lt['imbalance_factor']:g}, n_max {lt['n_max']}, seed "
           f"{lt['seed']}") if lt else "none (balanced)"
    lines = [f"{s['name']}  ({s['origin']})",
             f"  images     {s['channels']}x{s['image_size']}x{s['image_size']} uint8, augment recipe {s['augment']}",
             f"  normalise  mean {s['mean']}  std {s['std']}",
             f"  splits     train {s['train_size']}, test {s['test_size']}, {s['num_classes']} classes",
             f"  long tail  {cut}; hash {s['lt_hash']}",
             "  train images per class (test):"]
    width = max(len(c) for c in s["classes"])
    for name, n, t in zip(s["classes"], s["class_counts"], s["test_class_counts"]):
        lines.append(f"    {name:<{width}}  {n:>6}  ({t})")
    groups = s["class_groups"]
    lines.append("  groups     " + ", ".join(f"{k} {len(v)}" for k, v in groups.items()))
    if s.get("views"):
        lines.append(f"  views      {s['views']}")
    return "\n".join(lines)


def write_views(ds: Any, path: Path, seed: int) -> None:
    """A PNG of GRID_IMAGES training images (spread over the classes) as view pairs: one column per image,
    rows original, view 1, view 2."""
    plt = pyplot_agg()
    gen = torch.Generator().manual_seed(seed)
    # the first training image of GRID_IMAGES classes spread over the label range (tail classes included)
    wanted = torch.linspace(0, ds.num_classes - 1, GRID_IMAGES).round().long()
    picks = torch.stack([torch.nonzero(ds.train_labels == c)[0, 0] for c in wanted])
    x = ds.train_images[picks]
    v1, v2 = TwoViewAugment(ds.augment, ds.image_size, ds.mean, ds.std)(x, gen)
    mean, std = torch.tensor(ds.mean).view(1, -1, 1, 1), torch.tensor(ds.std).view(1, -1, 1, 1)
    rows = [x.float() / 255, (v1 * std + mean).clamp(0, 1), (v2 * std + mean).clamp(0, 1)]
    fig, axes = plt.subplots(3, GRID_IMAGES, figsize=(1.4 * GRID_IMAGES, 4.6), squeeze=False)
    with closing_figure(fig):
        for r, (label, images) in enumerate(zip(("image", "view 1", "view 2"), rows)):
            for c in range(GRID_IMAGES):
                ax = axes[r][c]
                ax.imshow(images[c].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1,
                          interpolation="nearest")  # small images: every pixel shown as it is, not smoothed
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(label)
                if r == 0:
                    ax.set_title(ds.classes[int(ds.train_labels[picks[c]])], fontsize=8)
        fig.suptitle(f"{ds.name}: two {ds.augment} views (seed {seed})")
        fig.tight_layout()
        save_figure(fig, path, formats=("png",))
