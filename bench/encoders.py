"""Encoders for contrastive training: a backbone (features for evaluation) plus a projector (input to the loss).

    model = create_encoder("resnet18", in_channels=3, image_size=32)   # CIFAR stem chosen automatically
    h = model.features(x)      # (B, model.feature_dim) backbone features: what kNN / linear probe evaluate
    z = model(x)               # (B, projector_out) projector output: what the strategy's loss sees

SimCLR (Chen et al., 2020) showed that the representation *before* the projection head transfers better, so evaluation
always uses `features`, never the projector output. Modules contain no device-specific code; they work with
channels_last inputs (convolutions, BatchNorm, pooling and a spatial mean all keep that layout).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import ResNet

MIN_IMAGE_SIZE = 8  # sklearn digits; every encoder is tested down to this size


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 conv (no bias: BatchNorm follows) → BatchNorm → ReLU, spatial size kept."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """A small VGG-style conv net for ≤ 32 px images on a CPU.

    One conv block per width; 2×2 max-pooling after every block but the last, so 8 px digits reach 1×1 after three
    pools and 32 px CIFAR images 4×4; `ceil_mode` keeps odd sizes (28 → 14 → 7 → 4) from losing their border.
    A global average pool gives (B, widths[-1]) features.

    x: (B, in_channels, H, W) with H, W ≥ 8  ->  (B, feature_dim)
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            layers.append(conv_block(channels, width))
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            channels = width
        self.body = nn.Sequential(*layers)
        self.feature_dim = channels

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).mean(dim=(2, 3))


def adapt_resnet(net: ResNet, in_channels: int, cifar_stem: bool) -> ResNet:
    """Turn a torchvision ResNet into a feature extractor: new first conv, optional CIFAR stem, `fc` → identity.

    The CIFAR stem (He et al., 2016, §4.2; SimCLR appendix B.9) is a 3×3 stride-1 first conv with no max-pool: the
    ImageNet stem (7×7 stride 2 + max-pool) would shrink a 32 px image to 8 px before the first residual stage.
    """
    if cifar_stem:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    else:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net


class Projector(nn.Module):
    """SimCLR projection head: `layers` linear layers with BatchNorm + ReLU between them (Chen et al., 2020, v2 style).

    Hidden linears have no bias (BatchNorm follows). x: (B, in_features) -> (B, out_features).
    """

    def __init__(self, in_features: int, hidden: int = 512, out: int = 128, layers: int = 2) -> None:
        super().__init__()
        if layers < 1 or hidden < 1 or out < 1:
            raise ValueError(f"Projector needs layers, hidden and out >= 1, got {layers=}, {hidden=}, {out=}")
        sizes = [in_features] + [hidden] * (layers - 1) + [out]
        modules: list[nn.Module] = []
        for i in range(layers - 1):
            modules += [nn.Linear(sizes[i], sizes[i + 1], bias=False), nn.BatchNorm1d(sizes[i + 1]),
                        nn.ReLU(inplace=True)]
        modules.append(nn.Linear(sizes[-2], sizes[-1]))
        self.net = nn.Sequential(*modules)
        self.in_features = in_features
        self.out_features = out

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ContrastiveModel(nn.Module):
    """Backbone + projector. `features(x)`: (B, feature_dim) for evaluation; `forward(x)`: (B, out_dim) for the loss."""

    def __init__(self, backbone: nn.Module, projector: Projector) -> None:
        super().__init__()
        backbone_dim = getattr(backbone, "feature_dim", projector.in_features)
        if backbone_dim != projector.in_features:
            raise ValueError(f"projector expects {projector.in_features} inputs but the backbone gives {backbone_dim}")
        self.backbone = backbone
        self.projector = projector
        self.feature_dim = projector.in_features
        self.out_dim = projector.out_features

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images -> (B, feature_dim) backbone features (pooled, before the projector)."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.projector(self.backbone(x))


def build_small_cnn(in_channels: int, cifar_stem: bool | None) -> nn.Module:
    if cifar_stem is not None:
        raise ValueError("cifar_stem applies to the ResNets only; leave it None for 'small_cnn'")
    return SmallCNN(in_channels)


def build_resnet18(in_channels: int, cifar_stem: bool) -> nn.Module:
    return adapt_resnet(resnet18(weights=None), in_channels, cifar_stem)


def build_resnet50(in_channels: int, cifar_stem: bool) -> nn.Module:
    return adapt_resnet(resnet50(weights=None), in_channels, cifar_stem)


BACKBONES: dict[str, Callable[[int, bool | None], nn.Module]] = {
    "small_cnn": build_small_cnn,
    "resnet18": build_resnet18,
    "resnet50": build_resnet50,
}
USES_STEM = {"resnet18", "resnet50"}


def list_encoders() -> list[str]:
    """Names `create_encoder` accepts, sorted."""
    return sorted(BACKBONES)


def resolve_cifar_stem(cifar_stem: bool | None, image_size: int) -> bool:
    """`None` means auto: the CIFAR stem for images ≤ 64 px, where the ImageNet stem downsamples too early."""
    return image_size <= 64 if cifar_stem is None else cifar_stem


def create_encoder(name: str, *, in_channels: int, image_size: int, projector_hidden: int = 512,
                   projector_out: int = 128, projector_layers: int = 2,
                   cifar_stem: bool | None = None) -> ContrastiveModel:
    """Backbone `name` (see `list_encoders()`) with a fresh SimCLR projector; random init, no pretrained weights.

    in_channels: 1 (digits, MNIST) or 3 (CIFAR); image_size: the side of the (square) training images, ≥ 8.
    cifar_stem: ResNets only; None picks it from image_size (on for ≤ 64 px).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown encoder {name!r}; valid: {list_encoders()}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
    stem = resolve_cifar_stem(cifar_stem, image_size) if name in USES_STEM else cifar_stem
    backbone = BACKBONES[name](in_channels, stem)
    projector = Projector(backbone.feature_dim, projector_hidden, projector_out, projector_layers)
    return ContrastiveModel(backbone, projector)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars, for result rows."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

