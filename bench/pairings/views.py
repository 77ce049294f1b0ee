"""`views`: two augmented views of one labelled image, the unimodal SimCLR setting (Chen et al., ICML 2020).

One tower (an image encoder with a projector) encodes both views of a batch in one forward pass; strategy state is
indexed by training image. Evaluation runs on the backbone features of un-augmented images: weighted and plain kNN,
linear probes, recall@k, per-class and long-tail group accuracies (`tempbench.eval`), with the τ analytics of
per-sample strategies against class frequency (iSogCLR's claim that frequent semantics get a large τ).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from tempbench.datasets import Card, ImageDataset, load_dataset
from tempbench.distributed import gather_rows, gather_with_grad, local_slice, shard_range
from tempbench.encoders import create_encoder
from tempbench.eval import (
    Evaluation,
    LabelledFeatures,
    evaluate,
    extract_features,
    knn_predict,
    prepare_features,
    save_tau_figure,
    search_neighbors,
    summarize_tau,
    tau_row_fields,
)
from tempbench.util import write_atomic, write_or_warn

from .base import HOLDOUT, ORDER, Pairing, TrainData, final_temperatures, register_pairing, seed_for

if TYPE_CHECKING:
    from tempbench.config import RunConfig
    from tempbench.train.recipe import Setup

MONITOR_K, MONITOR_T = 200, 0.1  # the kNN protocol of the final evaluation, on the held-out validation slice
PER_CLASS = ("knn200", "linear")  # classifiers whose per-class accuracy the row keeps (JSON lists)


class ViewsPairing(Pairing):
    """Two views of each labelled image through one encoder; state per training image."""

    name = "views"
    image_views = 2
    monitor_metric = "knn_monitor"
    study_metric = "val_knn200_top1"
    # the monitor and a study's objective read a slice held out of training, never the test split
    study_settings: ClassVar[dict[str, Any]] = {"val_fraction": 0.1}

    def data_settings(self, card: Card | None, settings: dict[str, Any]) -> dict[str, Any]:
        """The long-tail cut (imbalance factor, profile, n_max, the flat profile's n_total, class order) and image
        size: the user's, else the card's. The card's class order applies only where the data is cut (so
        long_tail=1.0 on an ordered card is its balanced dataset). A source string without a card is uncut, at its
        own image size."""
        lt = dict(card.long_tail or {}) if card is not None else {}
        long_tail = settings.get("long_tail") or float(lt.get("imbalance_factor", 1.0))
        n_max = settings.get("n_max", lt.get("n_max"))
        n_total = settings.get("n_total", lt.get("n_total"))
        cut = long_tail < 1.0 or n_max is not None or n_total is not None
        profile = settings.get("long_tail_profile") or (lt.get("profile", "exp") if cut else None)
        order = settings.get("class_order")
        order = order if order is not None else lt.get("class_order", "label") if cut else "label"
        return {"long_tail": long_tail, "long_tail_profile": profile, "n_max": n_max, "n_total": n_total,
                "class_order": order,
                "image_size": settings.get("image_size") or (card.image_size if card is not None else None)}

    def check(self, config: RunConfig) -> None:
        """The kNN monitor reads a slice held out of training: `monitor_every` needs `val_fraction`. Towers are
        trained here (locked towers, pair epochs and the image_caption state index are image_text settings)."""
        if config.monitor_every and not config.val_fraction:
            raise ValueError("monitor_every needs a validation slice to monitor: set val_fraction > 0 as well")
        if config.towers != "trained" or config.epoch_by != "images":
            raise ValueError("towers='locked' and epoch_by='pairs' are image_text settings; views runs train their "
                             "encoder on every image once an epoch")
        if config.state_index != "pair":
            raise ValueError("state_index='image_caption' is an image_text setting; views runs keep one state entry "
                             "per image")
        if config.feature_dropout:
            raise ValueError("feature_dropout is an image_text setting (dropout on frozen features); views runs "
                             "augment their images instead")

    def load(self, config: RunConfig) -> ImageDataset:
        """The labelled dataset with the config's long-tail cut (imbalance factor, profile, n_max, n_total, class
        order, subset seed)."""
        return load_dataset(config.dataset, long_tail=config.long_tail, image_size=config.image_size,
                            seed=config.subset_seed, profile=config.long_tail_profile, n_max=config.n_max,
                            n_total=config.n_total, class_order=config.class_order)

    def training_data(self, config: RunConfig, data: ImageDataset, device: torch.device) -> TrainData:
        """The training images that remain after the stratified hold-out, on `device`; one state entry per image."""
        train_idx, val_idx = split_holdout(data.train_labels, config.val_fraction, config.seed)
        return TrainData(data.train_images[train_idx].to(device), train_idx, val_idx, num_samples=len(train_idx))

    def build_model(self, config: RunConfig, data: ImageDataset, train: TrainData, device: torch.device,
                    out_dim: int) -> nn.Module:
        """One tower: the config's encoder (backbone + projector to `out_dim`) on `device`."""
        norm = "batch" if config.norm == "sync_batch" else config.norm  # converted to SyncBatchNorm when wrapped
        return create_encoder(config.encoder, in_channels=data.channels, image_size=data.image_size,
                              projector_hidden=config.projector_hidden, projector_out=out_dim,
                              projector_layers=config.projector_layers, norm=norm).to(device)

    def epoch_order(self, train: TrainData, seed: int, epoch: int) -> Tensor:
        """A seeded permutation of the training images: every image once an epoch (drop_last drops the rest)."""
        return torch.randperm(len(train.images), generator=torch.Generator().manual_seed(seed_for(seed, epoch, ORDER)))

    def encode(self, setup: Setup, idx: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Both views of the batch's images through the encoder in one forward pass, so BatchNorm normalises over
        2B images as in SimCLR; under torchrun each process renders and encodes its slice of the global batch."""
        world = setup.world
        local = local_slice(idx, world)
        views = torch.cat(setup.augment.slice_of(setup.train.images[local], generator, world.rank * len(local),
                                                 len(idx)))
        if setup.bf16:
            views = views.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=setup.device.type, dtype=torch.bfloat16, enabled=setup.bf16):
            z1, z2 = setup.train_model(views).chunk(2)
        return gather_with_grad(z1, world), gather_with_grad(z2, world)

    def epoch_fields(self, setup: Setup, tau: Tensor) -> dict[str, Any]:
        """`tau_by_class`: the class-mean τ (a list: the row's history keeps it for the per-class τ figures)."""
        labels = setup.data.train_labels[setup.train.train_idx].to(tau.device)
        return {"tau_by_class": class_means(tau, labels, setup.data.num_classes)}

    def monitor(self, setup: Setup) -> dict[str, float]:
        """`knn_monitor`: kNN-200 top-1 (%) of the held-out slice (NaN without one)."""
        return {"knn_monitor": monitor_knn(setup)}

    def evaluate(self, setup: Setup) -> tuple[dict[str, Any], TauReport | None]:
        """Every registered views metric on the test split (and `val_...` on a held-out slice), per-class
        accuracies, the probe's diagnostics, and the class τ analytics of a per-sample-τ strategy."""
        evaluations = build_evaluations(setup)
        if not setup.world.main:
            return {}, None
        metrics: dict[str, Any] = {}
        for split, ev in evaluations.items():
            metrics |= evaluate(ev, split=split)
        test = evaluations["test"]
        metrics |= probe_diagnostics(test)
        metrics |= {f"per_class_{c}": json.dumps(test.per_class(_predictions(test, c))) for c in PER_CLASS}
        report = None
        tau = final_temperatures(setup.strategy)
        if tau is not None:
            labels = setup.data.train_labels[setup.train.train_idx].cpu()
            report = TauReport(tau, labels, summarize_tau(tau, labels, setup.data.class_counts))
        return metrics, report

    def row_fields(self, setup: Setup, report: TauReport | None) -> dict[str, Any]:
        """The long-tail cut and class counts, the images trained on and held out, the class τ analytics."""
        data = setup.data
        tau = tau_row_fields(report.summary) if report else {"tau_spearman": float("nan"), "tau_by_class": ""}
        return {"long_tail": json.dumps(data.long_tail), "class_counts": json.dumps(data.class_counts),
                "lt_hash": data.lt_hash, "subset_seed": setup.config.subset_seed,
                "num_train": len(setup.train.train_idx), "num_val": len(setup.train.val_idx), **tau}


register_pairing(ViewsPairing())


def split_holdout(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Stratified split of training positions into (contrastive training, held-out validation); a class with fewer
    than two images gives none. fraction 0: everything trains."""
    if fraction == 0:
        return torch.arange(len(labels)), torch.zeros(0, dtype=torch.int64)
    gen = torch.Generator().manual_seed(seed_for(seed, 0, HOLDOUT))
    train, held = [], []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        n_val = int(fraction * len(members)) if len(members) >= 2 else 0
        held.append(members[:n_val])
        train.append(members[n_val:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(held)).values


def class_means(values: Tensor, labels: Tensor, num_classes: int) -> list[float | None]:
    """(C,) mean of `values` (N,) per class, None for a class without samples (JSON-friendly). Summed in float64:
    a class of 5,000 float32 τ would otherwise lose the last digits the figures compare."""
    sums = torch.bincount(labels, weights=values.double(), minlength=num_classes)
    counts = torch.bincount(labels, minlength=num_classes)
    return [float(s / n) if n else None for s, n in zip(sums.tolist(), counts.tolist())]


def sharded_features(setup: Setup, images: Tensor) -> Tensor:
    """(N, F) float32 backbone features of un-augmented `images` (N, C, H, W); under torchrun each process
    extracts its shard and every process gets all of them."""
    start, stop = shard_range(len(images), setup.world)
    data = setup.data
    return gather_rows(extract_features(setup.model, images[start:stop], data.mean, data.std, setup.device),
                       setup.world)


def monitor_knn(setup: Setup) -> float:
    """kNN top-1 (k=200, T=0.1) of the held-out validation slice against the contrastive-training images: a
    label-using monitor that never touches the test set. NaN when nothing is held out."""
    train, data = setup.train, setup.data
    if len(train.val_idx) == 0:
        return math.nan
    bank = prepare_features(sharded_features(setup, train.images))
    queries = prepare_features(sharded_features(setup, data.train_images[train.val_idx]))
    neighbors = search_neighbors(bank, queries, MONITOR_K, backend=setup.config.eval_backend)
    bank_labels = data.train_labels[train.train_idx].to(bank.device)
    pred = knn_predict(neighbors, bank_labels, data.num_classes, MONITOR_K, MONITOR_T)
    return 100.0 * float((pred.cpu() == data.train_labels[train.val_idx]).double().mean())


def build_evaluations(setup: Setup) -> dict[str, Evaluation]:
    """{"test": ..., "val": ... (only with a held-out slice)}: the bank is always the images contrastive training
    saw; the test split is evaluated once, the held-out slice is what selection may read."""
    data, cfg, train = setup.data, setup.config, setup.train
    bank = LabelledFeatures(sharded_features(setup, train.images), data.train_labels[train.train_idx])
    balanced = None
    if data.uncut_train_images is not None:  # the full-shot probe trains on the uncut split (SDCLR/BCL protocol)
        balanced = LabelledFeatures(sharded_features(setup, data.uncut_train_images), data.uncut_train_labels)
    options = {"num_classes": data.num_classes, "seed": cfg.seed, "backend": cfg.eval_backend}
    out = {"test": Evaluation(bank, LabelledFeatures(sharded_features(setup, data.test_images), data.test_labels),
                              data.class_counts, balanced_bank=balanced, **options)}
    if len(train.val_idx):
        held = LabelledFeatures(sharded_features(setup, data.train_images[train.val_idx]),
                                data.train_labels[train.val_idx])
        out["val"] = Evaluation(bank, held, data.class_counts, **options)
    return out


def _predictions(ev: Evaluation, classifier: str) -> Tensor | None:
    return ev.knn(200, 0.1) if classifier == "knn200" else ev.probe_predictions("full")


def probe_diagnostics(ev: Evaluation) -> dict[str, Any]:
    """The full probe's chosen λ and its validation accuracy, the λ grid it searched (and whether the choice sits at
    an edge of it), and how its final fit converged (iterations, final max-abs gradient, converged or not)."""
    probe = ev.probe("full")
    return {"linear_wd": float(probe.wd), "linear_val_top1": float(probe.val_top1),
            "linear_wd_grid": json.dumps(list(probe.wd_grid)), "linear_wd_at_edge": bool(probe.at_edge),
            "linear_iterations": int(probe.iterations), "linear_grad_norm": float(probe.grad_norm),
            "linear_converged": bool(probe.converged), "linear_val_converged": bool(probe.val_converged)}


@dataclass
class TauReport:
    """Per-sample τ of a per-sample strategy with its class analytics (`tempbench.eval.summarize_tau`)."""

    tau: Tensor  # (N_train,) CPU
    labels: Tensor  # (N_train,) CPU
    summary: dict[str, Any]

    def write(self, folder: Path, title: str = "") -> list[Path]:
        """tau_per_sample.csv, tau_by_class.csv and the τ-vs-frequency figure in `folder`, each atomically; a file
        that cannot be written is an `ArtifactWarning` naming it, and the others are still written."""
        import pandas as pd  # optional here: the training path runs where only torch and numpy are installed

        per_sample = pd.DataFrame({"sample": range(len(self.tau)), "label": self.labels.numpy(),
                                   "tau": self.tau.numpy()})
        table = self.summary["table"]
        writers = {"tau_per_sample.csv": lambda p: write_atomic(p, lambda fh: per_sample.to_csv(fh, index=False)),
                   "tau_by_class.csv": lambda p: write_atomic(p, lambda fh: table.to_csv(fh, index=False)),
                   "tau_vs_frequency.png": lambda p: save_tau_figure(self.summary, p, title=title)}
        return [p for name, write in writers.items() if (p := write_or_warn(folder / name, write)) is not None]
