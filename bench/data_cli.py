"""`tempbench data list` and `tempbench data show`: the dataset cards and source kinds, and what a card or source
string loads to (split sizes, training images per class after the long-tail cut, the cut's hash), optionally with a
PNG grid of augmented view pairs."""

from __future__ import annotations

import argparse
import json
from typing import Any

GRID_IMAGES = 8  # view pairs in the --grid figure


def _list(args: argparse.Namespace) -> int:
    from tempbench.datasets import SOURCE_KINDS, get_card, list_cards

    cards = [get_card(name) for name in list_cards()]
    if args.json:
        print(json.dumps({"cards": [c.to_dict() for c in cards], "source_kinds": SOURCE_KINDS}, indent=2))
        return 0
    print("cards:")
    width = max(len(c.name) for c in cards)
    for card in cards:
        print(f"  {card.name:<{width}}  {card.description}")
    print("source kinds (load any without a card):")
    for text in SOURCE_KINDS.values():
        print(f"  {text}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from tempbench.datasets import load_dataset

    if args.grid and not args.grid.lower().endswith(".png"):
        raise ValueError(f"--grid writes a PNG file; give a name ending in .png, got {args.grid!r}")
    ds = load_dataset(args.dataset, long_tail=args.long_tail, image_size=args.image_size, seed=args.seed)
    summary = ds.summary()
    if args.grid:
        write_grid(ds, args.grid, args.seed)
        summary["grid"] = args.grid
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
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
    if s.get("grid"):
        lines.append(f"  grid       {s['grid']}")
    return "\n".join(lines)


def write_grid(ds: Any, path: str, seed: int) -> None:
    """A PNG of GRID_IMAGES training images (spread over the classes) as view pairs: one column per image,
    rows original, view 1, view 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from tempbench.augment import TwoViewAugment

    gen = torch.Generator().manual_seed(seed)
    # the first training image of GRID_IMAGES classes spread over the label range (tail classes included)
    wanted = torch.linspace(0, ds.num_classes - 1, GRID_IMAGES).round().long()
    picks = torch.stack([torch.nonzero(ds.train_labels == c)[0, 0] for c in wanted])
    x = ds.train_images[picks]
    v1, v2 = TwoViewAugment(ds.augment, ds.image_size, ds.mean, ds.std)(x, gen)
    mean, std = torch.tensor(ds.mean).view(1, -1, 1, 1), torch.tensor(ds.std).view(1, -1, 1, 1)
    rows = [x.float() / 255, (v1 * std + mean).clamp(0, 1), (v2 * std + mean).clamp(0, 1)]
    fig, axes = plt.subplots(3, GRID_IMAGES, figsize=(1.4 * GRID_IMAGES, 4.6), squeeze=False)
    for r, (label, images) in enumerate(zip(("image", "view 1", "view 2"), rows)):
        for c in range(GRID_IMAGES):
            ax = axes[r][c]
            ax.imshow(images[c].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label)
            if r == 0:
                ax.set_title(ds.classes[int(ds.train_labels[picks[c]])], fontsize=8)
    fig.suptitle(f"{ds.name}: two {ds.augment} views (seed {seed})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def register(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="dataset cards and sources: list them, show what one loads to")
    sub = data.add_subparsers(dest="data_command", metavar="WHAT", required=True)
    p = sub.add_parser("list", help="the dataset cards and the source kinds")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_list)
    p = sub.add_parser("show", help="split sizes, per-class training counts and the long-tail hash of a dataset",
                       description=__doc__)
    p.add_argument("dataset", metavar="CARD|SOURCE", help="a card name (see `data list`) or a source string")
    p.add_argument("--long-tail", type=float, default=None, metavar="R",
                   help="imbalance factor in (0, 1] (default: as the card says; 1 = balanced)")
    p.add_argument("--image-size", type=int, default=None, metavar="S", help="image side (default: the card's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the long-tail selection and the grid (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--grid", default="", metavar="FILE", help="also write a PNG grid of augmented view pairs")
    p.set_defaults(func=_show)
