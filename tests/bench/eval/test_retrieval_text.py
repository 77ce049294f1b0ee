"""Image–text retrieval against a loop-based reference written from its definition (README, "Evaluation
protocols"), backend agreement, ties, and the image_text metrics in the registry."""

from __future__ import annotations

import math

import pytest
import torch

from tempbench.eval import list_metrics, prepare_features
from tempbench.eval.neighbors import _import_faiss
from tempbench.eval.retrieval_text import ImageTextEvaluation, evaluate_image_text

BACKENDS = ["torch"] + (["faiss"] if _import_faiss() is not None else [])


def reference(images: torch.Tensor, texts: torch.Tensor, owner: list[int], ks=(1, 5, 10)) -> dict[str, float]:
    """§9 by its words, loops over a dense float64 S of the prepared (normalised, snapped) features."""
    zi, zt = prepare_features(images).double(), prepare_features(texts).double()
    s = (zi @ zt.T).tolist()
    n_img, n_txt = len(s), len(owner)
    i2t = []
    for i in range(n_img):
        own = [c for c in range(n_txt) if owner[c] == i]
        i2t.append(min(sum(1 for t in range(n_txt) if s[i][t] > s[i][c]) for c in own))
    t2i = [sum(1 for j in range(n_img) if s[j][c] > s[owner[c]][c]) for c in range(n_txt)]
    out = {}
    for side, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            out[f"{side}_r{k}"] = 100.0 * sum(r < k for r in ranks) / len(ranks)
        out[f"{side}_r_mean"] = sum(out[f"{side}_r{k}"] for k in ks) / len(ks)
    out["r_mean"] = (out["i2t_r_mean"] + out["t2i_r_mean"]) / 2
    return out


def noisy_pairs(n_img: int, per_image: list[int], d: int, noise: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n_img, d, generator=gen)
    owner = [i for i in range(n_img) for _ in range(per_image[i % len(per_image)])]
    texts = images[owner] + noise * torch.randn(len(owner), d, generator=gen)
    return images, texts, owner


def retrieval_metrics(images, texts, owner, backend: str = "auto") -> dict[str, float]:
    """The registered image_text test metrics on one split, as a run computes them."""
    return evaluate_image_text(ImageTextEvaluation(images, texts, owner, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("noise", "per_image"), [(1.0, [5]), (2.5, [1, 3, 5, 2]), (0.0, [5])])
def test_matches_the_loop_reference(backend: str, noise: float, per_image: list[int]) -> None:
    images, texts, owner = noisy_pairs(40, per_image, 16, noise)
    got = retrieval_metrics(images, texts, owner, backend=backend)
    want = reference(images, texts, owner)
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name
    if noise == 0.0:
        assert got["r_mean"] == 100.0


def test_backends_agree_exactly_and_ties_favour_the_positive() -> None:
    images, texts, owner = noisy_pairs(30, [5], 8, 1.5, seed=3)
    texts[7] = texts[8]  # an exact duplicate caption of another image: ties in both directions
    images[4] = images[5]
    results = [retrieval_metrics(images, texts, owner, backend=b) for b in BACKENDS]
    assert all(r == results[0] for r in results)
    assert results[0] == pytest.approx(reference(images, texts, owner), abs=1e-9)
    # two identical images with identical captions: with strict ">" both rank first
    one = torch.eye(4)[:2].repeat(2, 1)  # images 0 and 2 equal, 1 and 3 equal
    ev = ImageTextEvaluation(one, one, torch.arange(4))
    assert ev.i2t_recall(1) == 100.0 and ev.t2i_recall(1) == 100.0


def test_ranks_are_capped_and_larger_k_recomputes() -> None:
    images, texts, owner = noisy_pairs(50, [2], 8, 3.0, seed=1)
    ev = ImageTextEvaluation(images, texts, owner)
    i2t, t2i = ev.ranks()
    assert int(i2t.max()) <= 10 and int(t2i.max()) <= 10 and t2i.shape == (100,)
    ref = reference(images, texts, owner, ks=(20,))
    assert ev.i2t_recall(20) == pytest.approx(ref["i2t_r20"]) and ev.t2i_recall(20) == pytest.approx(ref["t2i_r20"])


def test_bad_input() -> None:
    images, texts, owner = noisy_pairs(4, [2], 8, 1.0)
    with pytest.raises(ValueError, match="every image needs at least one caption"):
        ImageTextEvaluation(images, texts[:6], owner[:6])
    with pytest.raises(ValueError, match="one integer image index per caption"):
        ImageTextEvaluation(images, texts, owner[:-1])
    with pytest.raises(ValueError, match="d=8 but text features d=4"):
        ImageTextEvaluation(images, texts[:, :4], owner)


def test_registry_holds_test_and_val_metrics() -> None:
    test = [m.name for m in list_metrics(pairing="image_text", split="test") if m.compute is not None]
    val = [m.name for m in list_metrics(pairing="image_text", split="val")]
    names = [f"{s}_r{k}" for s in ("i2t", "t2i") for k in (1, 5, 10)]
    assert set(test) == {*names, "i2t_r_mean", "t2i_r_mean", "r_mean"}
    assert set(val) == {f"val_{n}" for n in test}
    assert all(m.pairing == "image_text" for m in list_metrics("tau_*_spearman"))
    assert not any(m.name.startswith(("i2t", "t2i")) for m in list_metrics(pairing="views"))
    images, texts, owner = noisy_pairs(20, [5], 8, 1.0)
    ev = ImageTextEvaluation(images, texts, owner)
    row, row_val = evaluate_image_text(ev), evaluate_image_text(ev, split="val")
    assert row == pytest.approx(reference(images, texts, owner), abs=1e-9)
    assert row_val == {f"val_{k}": v for k, v in row.items()} and all(math.isfinite(v) for v in row.values())
