"""Encoders: output shapes at digits/MNIST/CIFAR sizes, the CIFAR stem, features vs projector, channels_last."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tempbench.encoders import (
    ContrastiveModel,
    Projector,
    SmallCNN,
    create_encoder,
    list_encoders,
)

FEATURE_DIMS = {"small_cnn": 256, "resnet18": 512, "resnet50": 2048}
SHAPE_CASES = [(name, channels, size) for name in ("small_cnn", "resnet18") for channels in (1, 3)
               for size in (8, 28, 32)] + [("resnet50", 1, 32), ("resnet50", 3, 32)]


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def test_list_encoders_names_every_builtin() -> None:
    assert list_encoders() == sorted(FEATURE_DIMS)


@pytest.mark.parametrize(("name", "channels", "size"), SHAPE_CASES)
def test_features_and_projections_have_the_documented_shapes(name: str, channels: int, size: int) -> None:
    batch = 2 if name == "resnet50" else 4  # resnet50 kept tiny so the suite stays fast on a CPU
    model = create_encoder(name, in_channels=channels, image_size=size, projector_hidden=64, projector_out=32)
    x = torch.randn(batch, channels, size, size)
    h, z = model.features(x), model(x)
    assert model.feature_dim == FEATURE_DIMS[name]
    assert h.shape == (batch, FEATURE_DIMS[name])
    assert z.shape == (batch, 32) and model.out_dim == 32
    assert h.shape[1] != z.shape[1]
    assert torch.isfinite(z).all()


def test_forward_is_the_projector_applied_to_the_features() -> None:
    model = create_encoder("small_cnn", in_channels=3, image_size=32).eval()
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(model(x), model.projector(model.features(x)))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_cifar_stem_is_3x3_stride_1_without_max_pool(name: str) -> None:
    backbone = create_encoder(name, in_channels=1, image_size=32).backbone
    assert backbone.conv1.kernel_size == (3, 3) and backbone.conv1.stride == (1, 1)
    assert backbone.conv1.in_channels == 1
    assert isinstance(backbone.maxpool, nn.Identity)
    assert isinstance(backbone.fc, nn.Identity)


def test_cifar_stem_is_automatic_by_image_size_and_can_be_forced() -> None:
    large = create_encoder("resnet18", in_channels=3, image_size=96).backbone
    assert large.conv1.kernel_size == (7, 7) and large.conv1.stride == (2, 2)
    assert isinstance(large.maxpool, nn.MaxPool2d)
    at_64 = create_encoder("resnet18", in_channels=3, image_size=64).backbone
    assert at_64.conv1.kernel_size == (3, 3)
    forced_off = create_encoder("resnet18", in_channels=3, image_size=32, cifar_stem=False).backbone
    assert forced_off.conv1.kernel_size == (7, 7)
    forced_on = create_encoder("resnet18", in_channels=3, image_size=224, cifar_stem=True).backbone
    assert forced_on.conv1.stride == (1, 1)


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
@pytest.mark.parametrize("train", [True, False])
def test_channels_last_input_gives_the_same_output(name: str, train: bool) -> None:
    model = create_encoder(name, in_channels=3, image_size=32).train(train)
    x = torch.randn(4, 3, 32, 32)
    expected = model(x)
    actual = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_every_parameter_receives_a_gradient() -> None:
    model = create_encoder("small_cnn", in_channels=1, image_size=8)
    model(torch.randn(8, 1, 8, 8)).square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_small_cnn_widths_set_the_feature_dim() -> None:
    net = SmallCNN(in_channels=1, widths=(8, 16, 24))
    assert net.feature_dim == 24
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 24)
    with pytest.raises(ValueError, match="widths"):
        SmallCNN(widths=())


@pytest.mark.parametrize(("layers", "linears", "norms"), [(1, 1, 0), (2, 2, 1), (3, 3, 2)])
def test_projector_has_bn_relu_between_linear_layers(layers: int, linears: int, norms: int) -> None:
    head = Projector(16, hidden=12, out=8, layers=layers)
    kinds = [type(m) for m in head.net]
    assert kinds.count(nn.Linear) == linears and kinds.count(nn.BatchNorm1d) == norms
    assert kinds[-1] is nn.Linear
    assert head(torch.randn(5, 16)).shape == (5, 8)


def test_contrastive_model_rejects_a_mismatched_projector() -> None:
    with pytest.raises(ValueError, match="projector expects 64"):
        ContrastiveModel(SmallCNN(widths=(8, 32)), Projector(64))


def test_bad_arguments_fail_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown encoder 'vit'.*resnet18"):
        create_encoder("vit", in_channels=3, image_size=32)
    with pytest.raises(ValueError, match="image_size"):
        create_encoder("small_cnn", in_channels=3, image_size=4)
    with pytest.raises(ValueError, match="in_channels"):
        create_encoder("small_cnn", in_channels=0, image_size=32)
    with pytest.raises(ValueError, match="cifar_stem"):
        create_encoder("small_cnn", in_channels=3, image_size=32, cifar_stem=True)


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_group_norm_makes_every_sample_independent_of_its_batch(name: str) -> None:
    """What the distributed equivalence test relies on: with norm="group" a sample's output does not depend on the
    other samples of its batch (BatchNorm's statistics would), in training mode."""
    torch.manual_seed(0)
    model = create_encoder(name, in_channels=3, image_size=16, norm="group", projector_hidden=32, projector_out=8)
    x = torch.randn(6, 3, 16, 16)
    torch.testing.assert_close(model(x)[:3], model(x[:3]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown norm 'layer'"):
        create_encoder(name, in_channels=3, image_size=16, norm="layer")
