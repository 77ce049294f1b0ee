"""Contract tests over every registered metric (built-ins and any plug-in): each declares a valid name, a label,
its protocol, split and pairing, and computes a finite percentage (or NaN where undefined) from the evaluation
context of its pairing; `val_` names and the val split go together."""

from __future__ import annotations

import math

import pytest
import torch

from tempbench.eval import Evaluation, LabelledFeatures, list_metrics
from tempbench.eval.metrics import Metric
from tempbench.eval.retrieval_text import ImageTextEvaluation

METRICS = list_metrics()


def views_evaluation() -> Evaluation:
    gen = torch.Generator().manual_seed(0)
    counts = [60, 25, 12, 5]
    labels = torch.repeat_interleave(torch.arange(4), torch.tensor(counts))
    centres = torch.randn(4, 16, generator=gen)
    bank = centres[labels] + torch.randn(len(labels), 16, generator=gen)
    test_labels = torch.arange(4).repeat(10)
    test = centres[test_labels] + torch.randn(40, 16, generator=gen)
    balanced_labels = torch.arange(4).repeat(30)
    balanced = centres[balanced_labels] + torch.randn(120, 16, generator=gen)
    return Evaluation(LabelledFeatures(bank, labels), LabelledFeatures(test, test_labels), counts, num_classes=4,
                      balanced_bank=LabelledFeatures(balanced, balanced_labels), backend="torch")


def image_text_evaluation() -> ImageTextEvaluation:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(12, 16, generator=gen)
    caption_image = torch.arange(12).repeat_interleave(3)
    texts = images[caption_image] + 0.5 * torch.randn(36, 16, generator=gen)
    return ImageTextEvaluation(images, texts, caption_image, backend="torch")


CONTEXTS = {"views": views_evaluation(), "image_text": image_text_evaluation()}


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_every_metric_declares_itself(metric: Metric) -> None:
    assert metric.label and len(metric.protocol) > 10
    assert metric.name.startswith("val_") == (metric.split == "val")
    assert metric.axis_label().startswith(metric.label)


@pytest.mark.parametrize("metric", [m for m in METRICS if m.compute is not None], ids=lambda m: m.name)
def test_every_metric_computes_from_its_pairings_evaluation(metric: Metric) -> None:
    value = metric.compute(CONTEXTS[metric.pairing])
    assert isinstance(value, float)
    assert math.isnan(value) or (metric.unit != "%" or 0.0 <= value <= 100.0)
