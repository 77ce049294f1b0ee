"""Batched two-view augmentation: shapes and ranges, per-sample randomness, determinism, recipe statistics."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from tempbench.augment import TwoViewAugment, hsv_to_rgb, normalize, rgb_to_hsv

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def batch(b: int = 64, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, size, size), generator=gen, dtype=torch.uint8)


def gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.parametrize(("recipe", "channels", "size", "out"), [("simclr", 3, 32, 32), ("simclr", 1, 28, 28),
                                                                 ("simclr", 3, 96, 64), ("digits", 1, 8, 16)])
def test_shapes_dtypes_ranges(recipe: str, channels: int, size: int, out: int) -> None:
    mean, std = MEAN[:channels], STD[:channels]
    aug = TwoViewAugment(recipe, out, mean, std)
    v1, v2 = aug(batch(16, channels, size), gen())
    for v in (v1, v2):
        assert v.shape == (16, channels, out, out) and v.dtype == torch.float32 and v.is_contiguous()
        low = (0 - torch.tensor(mean)) / torch.tensor(std)
        high = (1 - torch.tensor(mean)) / torch.tensor(std)
        per_channel = v.transpose(0, 1).reshape(channels, -1)
        assert torch.all(per_channel.min(1).values >= low - 1e-5)
        assert torch.all(per_channel.max(1).values <= high + 1e-5)
    assert not torch.equal(v1, v2)


def test_fixed_seed_is_deterministic_other_seed_differs() -> None:
    aug, x = TwoViewAugment("simclr", 32, MEAN, STD), batch()
    a, b, c = aug(x, gen(7)), aug(x, gen(7)), aug(x, gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    d1, _ = TwoViewAugment("digits", 8, (0.3,), (0.37,))(batch(8, 1, 8), gen(7))
    d2, _ = TwoViewAugment("digits", 8, (0.3,), (0.37,))(batch(8, 1, 8), gen(7))
    assert torch.equal(d1, d2)


def test_parameters_differ_within_a_batch() -> None:
    aug = TwoViewAugment("simclr", 32, MEAN, STD)
    p = aug.sample_params(64, 32, 32, gen())
    assert p["box"].shape == (128, 4) and p["box"].unique(dim=0).shape[0] == 128
    assert 0 < p["flip"].sum() < 128 and p["brightness"].unique().numel() > 64
    # one image repeated: the views still differ from sample to sample
    same = batch(1).expand(32, -1, -1, -1).contiguous()
    v1, _ = aug(same, gen())
    assert all(not torch.equal(v1[0], v1[i]) for i in range(1, 32))
    digits = TwoViewAugment("digits", 8, (0.3,), (0.37,)).sample_params(32, 8, 8, gen(), channels=1)
    assert digits["angle"].unique().numel() == 64 and digits["noise"].shape == (64, 1, 8, 8)


def test_crop_and_flip_statistics_match_the_recipe() -> None:
    aug = TwoViewAugment("simclr", 32, MEAN, STD)
    p = aug.sample_params(10_000, 32, 32, gen(3))
    box = p["box"]
    w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    area = w * h / (32 * 32)
    assert area.min() >= 0.2 - 1e-4 and area.max() <= 1 + 1e-4
    assert abs(area.mean().item() - 0.6) < 0.01  # uniform on (0.2, 1)
    ratio = w / h
    assert ratio.min() >= 3 / 4 - 1e-4 and ratio.max() <= 4 / 3 + 1e-4
    assert box[:, :2].min() >= 0 and box[:, 2].max() <= 32 + 1e-4 and box[:, 3].max() <= 32 + 1e-4
    assert abs(p["flip"].float().mean().item() - 0.5) < 0.05
    assert abs((p["brightness"] != 1).float().mean().item() - 0.8) < 0.05
    assert abs(p["gray"].float().mean().item() - 0.2) < 0.05
    assert TwoViewAugment("simclr", 96).scale == (0.08, 1.0) and TwoViewAugment("simclr", 32).blur_kernel == 0


def test_flip_really_mirrors() -> None:
    aug = TwoViewAugment("simclr", 8, (0.0,), (1.0,))
    x = batch(2, 1, 8)
    p = aug.sample_params(2, 8, 8, gen())
    p["box"] = torch.tensor([[0.0, 0.0, 8.0, 8.0]]).repeat(4, 1)  # whole image: no crop
    p["flip"] = torch.tensor([False, True, False, True])
    for key in ("brightness", "contrast"):
        p[key] = torch.ones(4)
    v1, v2 = aug.apply(x, p)
    assert torch.allclose(v1[0], x[0].float() / 255, atol=1e-5)
    assert torch.allclose(v1[1], x[1].float().flip(-1) / 255, atol=1e-5)
    assert torch.allclose(v2[1], v1[1], atol=1e-5)  # rows B.. are view 2, with the same flags here


def test_hue_matches_torchvision() -> None:
    x = torch.rand(8, 3, 6, 6, generator=gen())
    x[0] = x[0, :1]  # a gray image: hue undefined, kept
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    for shift in (-0.1, 0.03, 0.1):
        hsv = rgb_to_hsv(x)
        hsv[:, 0] = torch.remainder(hsv[:, 0] + shift, 1.0)
        assert torch.allclose(hsv_to_rgb(hsv), TF.adjust_hue(x, shift), atol=1e-5)


def test_normalize() -> None:
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert torch.allclose(normalize(x, (0.5,), (0.5,)), torch.tensor([[[[-1.0, 1.0]]]]))
    assert normalize(batch(2), MEAN, STD).dtype == torch.float32


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown augmentation recipe 'autoaugment'; valid: simclr, digits"):
        TwoViewAugment("autoaugment")
    aug = TwoViewAugment("simclr", 32, MEAN, STD)
    with pytest.raises(ValueError, match="expects a uint8"):
        aug(batch().float(), gen())
    with pytest.raises(ValueError, match="1 channels, mean/std have 3"):
        aug(batch(4, 1), gen())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("recipe", ["simclr", "digits"])
def test_cuda_matches_cpu(recipe: str) -> None:
    channels, size = (3, 64) if recipe == "simclr" else (1, 8)
    aug = TwoViewAugment(recipe, size, MEAN[:channels], STD[:channels])
    x = batch(32, channels, size)
    cpu = aug(x, gen(5))
    cuda = aug(x.cuda(), gen(5))  # a CPU generator: the same parameters, copied to the device
    for a, b in zip(cpu, cuda):
        # kernels differ (and cuDNN may blur in TF32): close, not bit-equal
        assert b.device.type == "cuda" and (a - b.cpu()).abs().mean() < 1e-3 and torch.allclose(a, b.cpu(), atol=3e-2)
    v1, v2 = aug(x.cuda(), gen(5, "cuda"))  # a CUDA generator: the draws stay on the device
    assert v1.shape == v2.shape == (32, channels, size, size) and torch.isfinite(v1).all()
