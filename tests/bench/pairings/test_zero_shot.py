"""Zero-shot classification with prompt templates on synthetic embeddings: the classifier formula, top-k with
strict ranks, mean per-class recall, the shipped CIFAR templates."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tempbench.pairings.image_text.zero_shot import CIFAR_TEMPLATES, zero_shot_classify, zero_shot_weights

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog"]


def fake_embed(d: int = 16):
    """Prompt -> its class's basis vector + a template-dependent offset (so the template average matters)."""
    basis = torch.eye(d)

    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        for text in texts:
            c = next(i for i, name in enumerate(CLASSES) if f" {name}." in text)
            t = next(i for i, tpl in enumerate(CIFAR_TEMPLATES) if tpl.format(CLASSES[c]) == text)
            out.append(3.0 * basis[c] + 0.5 * basis[len(CLASSES) + t % 4] * (t + 1))
        return torch.stack(out)

    return embed


def test_templates_are_the_18_openai_cifar_prompts() -> None:
    assert len(CIFAR_TEMPLATES) == 18 == len(set(CIFAR_TEMPLATES))
    assert all(t.count("{}") == 1 and t.endswith("{}.") for t in CIFAR_TEMPLATES)
    assert CIFAR_TEMPLATES[0] == "a photo of a {}." and CIFAR_TEMPLATES[-1] == "a photo of the big {}."


def test_weights_follow_the_formula() -> None:
    embed = fake_embed()
    w = zero_shot_weights(CLASSES, CIFAR_TEMPLATES, embed)
    for c, name in enumerate(CLASSES):
        e = F.normalize(embed([t.format(name) for t in CIFAR_TEMPLATES]), dim=1)
        torch.testing.assert_close(w[c], F.normalize(e.mean(0), dim=0))
    assert w.shape == (len(CLASSES), 16)


def test_accuracies_on_separable_and_confused_data() -> None:
    embed = fake_embed()
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 10 + [1] * 5 + [2, 3, 4, 5] * 5)
    w = zero_shot_weights(CLASSES, CIFAR_TEMPLATES, embed)
    images = w[labels] + 0.01 * torch.randn(len(labels), 16, generator=gen)
    perfect = zero_shot_classify(images, CLASSES, CIFAR_TEMPLATES, embed, labels)
    assert perfect == {"zs_top1": 100.0, "zs_top5": 100.0, "zs_class_avg": 100.0}
    wrong = labels.clone()
    wrong[:10] = 1  # every class-0 image is labelled 1: 10 misses among 35, and class 1's recall drops to 5/15
    out = zero_shot_classify(images, CLASSES, CIFAR_TEMPLATES, embed, wrong)
    assert out["zs_top1"] == pytest.approx(100.0 * 25 / 35)
    assert out["zs_class_avg"] == pytest.approx(100.0 * (5 / 15 + 4) / 5)  # class 0 absent from the labels
    assert out["zs_top5"] > out["zs_top1"]


def test_ties_count_as_hits_and_few_classes_have_no_top5() -> None:
    embed = fake_embed()
    w = zero_shot_weights(CLASSES[:3], ["a photo of a {}."], embed)
    tie = F.normalize(w[0] + w[1], dim=0)[None]  # equidistant from classes 0 and 1
    out = zero_shot_classify(tie.repeat(2, 1), CLASSES[:3], ["a photo of a {}."], embed, torch.tensor([0, 1]))
    assert out["zs_top1"] == 100.0 and math.isnan(out["zs_top5"])


def test_bad_templates_and_labels() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        zero_shot_weights(CLASSES, ["a photo"], fake_embed())
    with pytest.raises(ValueError, match=r"labels must be 2 class indices in \[0, 6\)"):
        zero_shot_classify(torch.randn(2, 16), CLASSES, CIFAR_TEMPLATES, fake_embed(), torch.tensor([0, 6]))
