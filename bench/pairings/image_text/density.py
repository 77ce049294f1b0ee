"""τ analytics for image–text runs without class labels: do pairs whose caption sits in a crowded region of text
space get different temperatures? (iSogCLR's claim: frequent semantics get larger τ, rare ones smaller.)

Density of training caption c: the mean cosine similarity to its k = 10 nearest other training captions in a frozen
text space (MiniLM, `towers.caption_embeddings`). Captions of c's own image do not count: they are paraphrases
of one picture, so with 5 per image up to 4 of the 10 nearest would be siblings and density would measure how much
an image's annotators agreed rather than how common its content is across the dataset. Identical captions of other
images do count (that is frequency). Neighbours are exact (`search_neighbors`, ties by index).

Pairs follow the strategy's state: row j of `temperatures()` (N_pairs, 2) = (τ_I, τ_T) of training pair j, i.e. of
caption `ds.caption_indices("train")[j]`; pass the densities of those captions in that order. (Under
`state_index="image_caption"` the pairing first gives pair j its image's τ_I: `ImageTextPairing.pair_temperatures`.)
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tempbench.eval.features import as_tensor, prepare_features
from tempbench.eval.neighbors import search_neighbors
from tempbench.eval.tau import class_spearman
from tempbench.figures import FigureWarning, offscreen_figure, save_figure
from tempbench.util import write_atomic, write_or_warn

from .pairs import TrainingPairs
from .towers import FROZEN_ENCODERS, caption_embeddings

DENSITY_K = 10
DENSITY_BINS = 10


def caption_density(embeddings: Any, caption_image: Any | None = None, k: int = DENSITY_K, *,
                    backend: str = "auto") -> Tensor:
    """(N,) float64 mean cosine of each caption to its k nearest other captions (N, D embeddings).

    caption_image: (N,) the image of each caption; captions of the same image are then skipped (None: only the
    caption itself is). Rows with fewer than k eligible neighbours average what there is (NaN with none).
    """
    x = prepare_features(embeddings)
    n = x.shape[0]
    owner = (torch.arange(n, device=x.device) if caption_image is None
             else as_tensor(caption_image, x.device).reshape(-1).to(torch.int64))
    if owner.numel() != n:
        raise ValueError(f"caption_image has {owner.numel()} entries for {n} captions")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    siblings = int(torch.unique(owner, return_counts=True)[1].max())  # the caption itself included
    top = search_neighbors(x, x, k + siblings, backend=backend)
    eligible = owner[top.indices] != owner[:, None]  # (N, K): skips the caption itself and its image's others
    first_k = eligible & (eligible.cumsum(dim=1) <= k)
    counts = first_k.sum(dim=1)
    sums = torch.where(first_k, top.sims, torch.zeros_like(top.sims)).sum(dim=1)
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan"))).cpu()


def tau_density_summary(temperatures: Any, density: Any, bins: int = DENSITY_BINS) -> dict[str, Any]:
    """Spearman ρ of τ_I and τ_T against density, and per-density-bin τ quantiles.

    temperatures: (N_pairs, 2) τ_I, τ_T; density: (N_pairs,). Returns {"tau_image_spearman", "tau_image_spearman_p",
    "tau_text_spearman", "tau_text_spearman_p" (NaN for a constant τ: global strategies), "n_pairs", "table":
    DataFrame, one row per equal-count density bin: bin, n, density_min/median/max, tau_image_q25/q50/q75,
    tau_text_q25/q50/q75}.
    """
    import pandas as pd  # imported here: the training path runs where only torch and numpy are installed

    tau, dens = _as_numpy(temperatures), _as_numpy(density).reshape(-1)
    if tau.ndim != 2 or tau.shape[1] != 2 or tau.shape[0] != dens.size:
        raise ValueError(f"temperatures must be (N_pairs, 2) with N_pairs = {dens.size} densities, got {tau.shape}")
    if not np.isfinite(tau).all():
        raise ValueError("temperatures contain NaN or inf")
    keep = np.isfinite(dens)
    tau, dens = tau[keep], dens[keep]
    out: dict[str, Any] = {"n_pairs": int(dens.size)}
    for col, side in enumerate(("image", "text")):
        rho, p = class_spearman(tau[:, col], dens)
        out[f"tau_{side}_spearman"], out[f"tau_{side}_spearman_p"] = rho, p
    rank = np.empty(dens.size, dtype=np.int64)
    rank[np.argsort(dens, kind="stable")] = np.arange(dens.size)
    which = rank * max(1, min(bins, dens.size)) // max(1, dens.size)  # equal-count bins by density rank
    out["table"] = pd.DataFrame([_bin_row(b, dens[which == b], tau[which == b]) for b in np.unique(which)])
    return out


def tau_density_analysis(temperatures: Any, text_embeddings: Any, caption_image: Any | None = None,
                         k: int = DENSITY_K, bins: int = DENSITY_BINS, *, backend: str = "auto") -> dict[str, Any]:
    """`caption_density` of the training captions, then `tau_density_summary`; the summary also holds
    "density" ((N_pairs,) float64) and "density_k"."""
    density = caption_density(text_embeddings, caption_image, k, backend=backend)
    return {**tau_density_summary(temperatures, density, bins), "density": density, "density_k": k}


def density_row_fields(summary: dict[str, Any]) -> dict[str, float]:
    """The result-row columns: tau_image_spearman, tau_text_spearman."""
    return {"tau_image_spearman": float(summary["tau_image_spearman"]),
            "tau_text_spearman": float(summary["tau_text_spearman"])}


def save_density_figure(summary: dict[str, Any], path: str | os.PathLike[str], title: str = "") -> Path | None:
    """PNG of median τ_I and τ_T per density bin with their interquartile ranges, Spearman ρ in the title;
    written atomically (`tempbench.figures.save_figure`). Returns the path, or None after a `FigureWarning` when
    drawing or writing failed: a figure must never cost the numbers of a finished run."""
    try:
        return _draw_density_figure(summary, path, title)
    except Exception as exc:  # drawing failed (writing failures warn inside save_figure)
        warnings.warn(f"could not write {path}: {type(exc).__name__}: {exc}", FigureWarning, stacklevel=2)
        return None


def _draw_density_figure(summary: dict[str, Any], path: str | os.PathLike[str], title: str) -> Path | None:
    t = summary["table"]
    fig = offscreen_figure(5, 3.5)  # outside pyplot: nothing to close, no backend switched under a user's session
    ax = fig.add_subplot()
    for side, marker in (("image", "o"), ("text", "s")):
        med = t[f"tau_{side}_q50"].to_numpy()
        err = np.vstack([med - t[f"tau_{side}_q25"].to_numpy(), t[f"tau_{side}_q75"].to_numpy() - med])
        ax.errorbar(t["density_median"], med, yerr=err.clip(min=0.0), fmt=f"{marker}-", capsize=3,
                    label=f"τ_{side[0].upper()} median (IQR)")
    k = summary.get("density_k", DENSITY_K)
    ax.set_xlabel(f"caption density (mean cosine to {k} nearest other-image captions)")
    ax.set_ylabel("τ")
    rho = f"Spearman ρ: τ_I {summary['tau_image_spearman']:.2f}, τ_T {summary['tau_text_spearman']:.2f}"
    ax.set_title(f"{title}\n{rho}".strip(), fontsize="medium")
    ax.legend(loc="best", fontsize="small")
    written = save_figure(fig, path, formats=("png",), close=False, warn=True)
    return written[0] if written else None


def _bin_row(b: int, dens: np.ndarray, tau: np.ndarray) -> dict[str, float]:
    qi, qt = np.percentile(tau[:, 0], (25, 50, 75)), np.percentile(tau[:, 1], (25, 50, 75))
    return {"bin": int(b), "n": int(dens.size), "density_min": float(dens.min()),
            "density_median": float(np.median(dens)), "density_max": float(dens.max()),
            **{f"tau_image_q{q}": float(v) for q, v in zip((25, 50, 75), qi)},
            **{f"tau_text_q{q}": float(v) for q, v in zip((25, 50, 75), qt)}}


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


@dataclass
class DensityReport:
    """Per-pair τ_I, τ_T of a per-sample-τ strategy against each caption's density among the training captions."""

    summary: dict[str, Any]
    temperatures: Tensor  # (M, 2) CPU
    captions: Tensor  # (M,)

    @classmethod
    def of(cls, temperatures: Tensor, pairs: TrainingPairs, data: Any, text_tower: str) -> DensityReport:
        """The analysis of `temperatures` (M, 2), row j the (τ_I, τ_T) of training pair j, against each pair's caption
        density in the frozen MiniLM space (a trainable hf: tower's space moves during training, so MiniLM is used)."""
        emb = caption_embeddings(data.captions, text_tower if text_tower in FROZEN_ENCODERS else "minilm")
        summary = tau_density_analysis(temperatures, emb[pairs.captions], data.caption_image[pairs.captions])
        return cls(summary, temperatures, pairs.captions)

    def row_fields(self) -> dict[str, float]:
        """`tau_image_spearman`, `tau_text_spearman`: what the result row keeps of the analysis."""
        return density_row_fields(self.summary)

    def write(self, folder: Path, title: str = "") -> list[Path]:
        """tau_per_pair.csv, tau_by_density.csv and tau_vs_density.png; a file that fails is a warning."""
        import pandas as pd  # optional here: the training path runs where only torch and numpy are installed

        per_pair = pd.DataFrame({"caption": self.captions.numpy(), "tau_image": self.temperatures[:, 0].numpy(),
                                 "tau_text": self.temperatures[:, 1].numpy()})
        written = [write_or_warn(folder / "tau_per_pair.csv",
                                 lambda p: write_atomic(p, lambda fh: per_pair.to_csv(fh, index=False))),
                   write_or_warn(folder / "tau_by_density.csv",
                                 lambda p: write_atomic(p, lambda fh: self.summary["table"].to_csv(fh, index=False))),
                   save_density_figure(self.summary, folder / "tau_vs_density.png", title=title)]
        return [p for p in written if p is not None]
