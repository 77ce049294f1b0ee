"""τ-vs-density analytics: caption density against a brute-force reference (same-image captions skipped), Spearman
of τ_I/τ_T with density, equal-count bins, the figure (and its failure as a warning)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tempbench.eval import prepare_features
from tempbench.pairings.image_text.density import (
    FigureWarning,
    caption_density,
    density_row_fields,
    save_density_figure,
    tau_density_analysis,
    tau_density_summary,
)


def clustered_captions(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """120 captions of 40 images (3 each) in clusters of very different sizes and spreads."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 12, generator=gen)
    sizes, spread = [60, 30, 20, 10], [0.2, 0.5, 0.8, 1.5]
    x = torch.cat([centres[i] + spread[i] * torch.randn(n, 12, generator=gen) for i, n in enumerate(sizes)])
    return x, torch.arange(120) // 3


def brute_density(x: torch.Tensor, owner: torch.Tensor, k: int) -> np.ndarray:
    z = prepare_features(x).double()
    s = (z @ z.T).numpy()
    out = []
    for c in range(len(z)):
        others = [(-s[c, j], j) for j in range(len(z)) if owner[j] != owner[c]]
        out.append(np.mean([-v for v, _ in sorted(others)[:k]]))
    return np.array(out)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_density_matches_brute_force_without_siblings(backend: str) -> None:
    x, owner = clustered_captions()
    got = caption_density(x, owner, k=10, backend=backend)
    np.testing.assert_allclose(got.numpy(), brute_density(x, owner, 10), rtol=0, atol=1e-12)
    alone = caption_density(x, None, k=10)  # only the caption itself skipped: siblings raise the density
    assert (alone.numpy() >= got.numpy() - 1e-12).all() and got.dtype == torch.float64


def test_duplicate_siblings_do_not_count_but_other_images_do() -> None:
    base = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    x = torch.cat([base[0:1].repeat(3, 1), base[1:2], base[0:1], base[2:3]])  # image 0: three identical captions
    owner = torch.tensor([0, 0, 0, 1, 2, 3])
    density = caption_density(x, owner, k=1)
    assert density[0] == pytest.approx(1.0)  # the identical caption of image 2 counts, its own siblings do not
    assert density[4] == pytest.approx(1.0)
    assert caption_density(torch.eye(2), torch.tensor([0, 0]), k=3).isnan().all()  # no other image at all


def test_spearman_bins_and_row_fields() -> None:
    x, owner = clustered_captions()
    density = caption_density(x, owner)
    rising = torch.stack([0.1 + density, 0.5 - density], dim=1).float()
    summary = tau_density_summary(rising, density, bins=4)
    assert summary["tau_image_spearman"] == pytest.approx(1.0) and summary["tau_text_spearman"] == pytest.approx(-1)
    table = summary["table"]
    assert table["n"].tolist() == [30, 30, 30, 30] and summary["n_pairs"] == 120
    assert (np.diff(table["tau_image_q50"]) > 0).all() and (table["density_min"].diff().dropna() > 0).all()
    flat = tau_density_summary(torch.full((120, 2), 0.3), density)  # a global τ: nothing to correlate
    assert math.isnan(flat["tau_image_spearman"]) and math.isnan(density_row_fields(flat)["tau_text_spearman"])
    full = tau_density_analysis(rising, x, owner, bins=4)
    assert full["density_k"] == 10 and torch.equal(full["density"], density)
    with pytest.raises(ValueError, match=r"\(N_pairs, 2\)"):
        tau_density_summary(rising[:, :1], density)


def test_figure_is_written_and_a_failure_is_a_warning(tmp_path: Path) -> None:
    x, owner = clustered_captions()
    density = caption_density(x, owner)
    summary = tau_density_summary(torch.stack([density, density.flip(0)], dim=1), density)
    path = save_density_figure(summary, tmp_path / "figs" / "tau_vs_density.png", title="isogclr")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "file").write_text("not a folder")
    with pytest.warns(FigureWarning, match="could not write"):
        assert save_density_figure(summary, tmp_path / "file" / "x.png") is None
