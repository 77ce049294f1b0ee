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
from functools import partial

from torch import Tensor, nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import ResNet

MIN_IMAGE_SIZE = 8  # sklearn digits; every encoder is tested down to this size
# "batch": BatchNorm (the SimCLR default); "group": GroupNorm, which depends on no other sample of the batch, so a
# run split over processes computes exactly what one process computes (SyncBatchNorm does that only on CUDA).
NORMS = ("batch", "group")
GROUPS = 8  # GroupNorm groups (every width used here is a multiple of 8)


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation after a conv (4-d input) or a hidden linear layer (2-d input: GroupNorm over features)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(GROUPS, channels), channels)
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")


def norm_layer_1d(kind: str, features: int) -> nn.Module:
    """The normalisation after a hidden linear layer, (B, features) -> (B, features): BatchNorm1d, or GroupNorm over
    groups of features (per sample, so independent of the batch as in `norm_layer`)."""
    return nn.BatchNorm1d(features) if kind == "batch" else norm_layer(kind, features)


def conv_block(in_channels: int, out_channels: int, norm: str = "batch") -> nn.Sequential:
    """3×3 conv (no bias: a normalisation follows) → norm → ReLU, spatial size kept."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        norm_layer(norm, out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """A small VGG-style conv net for ≤ 32 px images on a CPU.

    One conv block per width; 2×2 max-pooling after every block but the last, so 8 px digits reach 1×1 after three
    pools and 32 px CIFAR images 4×4; `ceil_mode` keeps odd sizes (28 → 14 → 7 → 4) from losing their border.
    A global average pool gives (B, widths[-1]) features.

    x: (B, in_channels, H, W) with H, W ≥ 8  ->  (B, feature_dim)
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256), norm: str = "batch") -> None:
        super().__init__()
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(widths):
            layers.append(conv_block(channels, width, norm))
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            channels = width
        self.body = nn.Sequential(*layers)
        self.feature_dim = channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, feature_dim) features: the conv body, then a global spatial mean."""
        return self.body(x).mean(dim=(2, 3))


def adapt_resnet(net: ResNet, in_channels: int, cifar_stem: bool, norm: str = "batch") -> ResNet:
    """Turn a torchvision ResNet into a feature extractor: new first conv, optional CIFAR stem, `fc` → identity.

    The CIFAR stem (He et al., 2016, §4.2; SimCLR appendix B.9) is a 3×3 stride-1 first conv with no max-pool: the
    ImageNet stem (7×7 stride 2 + max-pool) would shrink a 32 px image to 8 px before the first residual stage.
    """
    if cifar_stem:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    else:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = norm_layer(norm, 64)
    net.feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net


class Projector(nn.Module):
    """SimCLR projection head: `layers` linear layers with BatchNorm + ReLU between them (Chen et al., 2020, v2 style).

    Hidden linears have no bias (BatchNorm follows). x: (B, in_features) -> (B, out_features).
    """

    def __init__(self, in_features: int, hidden: int = 512, out: int = 128, layers: int = 2,
                 norm: str = "batch") -> None:
        super().__init__()
        if layers < 1 or hidden < 1 or out < 1:
            raise ValueError(f"Projector needs layers, hidden and out >= 1, got {layers=}, {hidden=}, {out=}")
        sizes = [in_features] + [hidden] * (layers - 1) + [out]
        modules: list[nn.Module] = []
        for i in range(layers - 1):
            modules += [nn.Linear(sizes[i], sizes[i + 1], bias=False), norm_layer_1d(norm, sizes[i + 1]),
                        nn.ReLU(inplace=True)]
        modules.append(nn.Linear(sizes[-2], sizes[-1]))
        self.net = nn.Sequential(*modules)
        self.in_features = in_features
        self.out_features = out

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_features) backbone features -> (B, out_features) projections, not normalised (the strategy
        L2-normalises what its loss compares)."""
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
        """(B, C, H, W) images -> (B, out_dim) projector outputs: what the strategy's loss sees, never evaluated."""
        return self.projector(self.backbone(x))


def build_small_cnn(in_channels: int, cifar_stem: bool | None, norm: str = "batch") -> nn.Module:
    """`SmallCNN` with its default widths (feature_dim 256); it has no stem to choose, so cifar_stem must be None."""
    if cifar_stem is not None:
        raise ValueError("cifar_stem applies to the ResNets only; leave it None for 'small_cnn'")
    return SmallCNN(in_channels, norm=norm)


def build_resnet18(in_channels: int, cifar_stem: bool, norm: str = "batch") -> nn.Module:
    """ResNet-18 (He et al., CVPR 2016) backbone, randomly initialised, feature_dim 512 (see `adapt_resnet`).

    `norm_layer=partial(norm_layer, norm)`: torchvision calls norm_layer(channels) for every norm in the residual
    blocks, so GroupNorm replaces all of them, not just the stem's.
    """
    return adapt_resnet(resnet18(weights=None, norm_layer=partial(norm_layer, norm)), in_channels, cifar_stem, norm)


def build_resnet50(in_channels: int, cifar_stem: bool, norm: str = "batch") -> nn.Module:
    """ResNet-50 (He et al., CVPR 2016; bottleneck blocks) backbone, randomly initialised, feature_dim 2048 (see
    `adapt_resnet`); `norm` applies to every normalisation, as in `build_resnet18`."""
    return adapt_resnet(resnet50(weights=None, norm_layer=partial(norm_layer, norm)), in_channels, cifar_stem, norm)


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": build_small_cnn,
    "resnet18": build_resnet18,
    "resnet50": build_resnet50,
}
USES_STEM = {"resnet18", "resnet50"}  # encoders with an ImageNet/CIFAR stem to choose (`resolve_cifar_stem`)


def list_encoders() -> list[str]:
    """Names `create_encoder` accepts, sorted."""
    return sorted(BACKBONES)


def resolve_cifar_stem(cifar_stem: bool | None, image_size: int) -> bool:
    """`None` means auto: the CIFAR stem for images ≤ 64 px, where the ImageNet stem downsamples too early."""
    return image_size <= 64 if cifar_stem is None else cifar_stem


def create_encoder(name: str, *, in_channels: int, image_size: int, projector_hidden: int = 512,
                   projector_out: int = 128, projector_layers: int = 2, cifar_stem: bool | None = None,
                   norm: str = "batch") -> ContrastiveModel:
    """Backbone `name` (see `list_encoders()`) with a fresh SimCLR projector; random init, no pretrained weights.

    in_channels: 1 (digits, MNIST) or 3 (CIFAR); image_size: the side of the (square) training images, ≥ 8.
    cifar_stem: ResNets only; None picks it from image_size (on for ≤ 64 px). norm: see NORMS.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    if name not in BACKBONES:
        raise ValueError(f"unknown encoder {name!r}; valid: {list_encoders()}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
    stem = resolve_cifar_stem(cifar_stem, image_size) if name in USES_STEM else cifar_stem
    backbone = BACKBONES[name](in_channels, stem, norm)
    projector = Projector(backbone.feature_dim, projector_hidden, projector_out, projector_layers, norm)
    return ContrastiveModel(backbone, projector)

