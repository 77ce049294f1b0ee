"""View augmentation (two views per image, or one for image–text pairs), batched on the device: per-sample random
parameters, no per-sample Python loop.

Recipes:
- "simclr" (Chen et al., ICML 2020, appendix A): random resized crop (scale (0.2, 1) at <= 64 px, (0.08, 1) above;
  ratio (3/4, 4/3)), horizontal flip p 0.5, colour jitter (brightness 0.4, contrast 0.4, saturation 0.4, hue 0.1)
  p 0.8, grayscale p 0.2, Gaussian blur p 0.5 at >= 64 px only (kernel 10% of the side, σ in [0.1, 2]).
  One-channel images get crop, flip, brightness and contrast.
- "digits": small affine jitter (rotation ±10°, translation ±1/8 of the side, scale 0.9–1.1) plus Gaussian noise
  (σ 0.05 on [0, 1]); no flip, no crop — they would change or cut away a digit.
- "clip" (image–text pairs): random resized crop (scale (0.5, 1), the iSogCLR authors' bimodal recipe) and
  horizontal flip only: colour changes could contradict a caption ("a red car").

Every random draw comes from the `torch.Generator` passed in, on the generator's device (keep it on the data's
device: a CPU generator works with CUDA data but copies the noise over), so a fixed seed gives identical views.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

RECIPES = ("simclr", "digits", "clip")
CLIP_SCALE = (0.5, 1.0)  # the iSogCLR authors' image–text crop; no colour changes, which captions may describe
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale
# SimCLR's colour distortion at strength s = 0.5 (0.8s, 0.8s, 0.8s, 0.2s), the strength of its CIFAR-10 runs
# (appendix B.9); s = 1 is its ImageNet setting
JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}
P_JITTER, P_GRAY, P_FLIP, P_BLUR = 0.8, 0.2, 0.5, 0.5  # SimCLR appendix A's probabilities
RATIO = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop default
DIGITS = {"degrees": 10.0, "translate": 1 / 8, "scale": (0.9, 1.1), "noise": 0.05}


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (B, C, H, W) -> float32 (x / 255 − mean) / std, per channel: for un-augmented evaluation images."""
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s


def uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> Tensor:
    """(n,) floats uniform in [low, high), drawn on the generator's device, returned on `device`."""
    return (torch.rand(n, generator=gen, device=gen.device) * (high - low) + low).to(device)


def gray(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma."""
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def flip_columns(x: Tensor, flip: Tensor) -> Tensor:
    """(B, C, H, W) with the samples where flip (B,) is true mirrored left-right: one gather of per-sample column
    indices instead of flipping every image and selecting."""
    w = x.shape[-1]
    cols = torch.arange(w, device=x.device)
    index = torch.where(flip.view(-1, 1), w - 1 - cols, cols)  # (B, W): tiny
    return x.gather(-1, index.view(-1, 1, 1, w).expand_as(x))


def rgb_to_hsv(x: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV, hue in [0, 1). The hue sector comes from the arg-max channel (the first
    on ties: R, then G, as torchvision), so one gather replaces three masked branches."""
    maxc, arg = x.max(1, keepdim=True)
    span = maxc - x.amin(1, keepdim=True)
    sat = span / maxc.clamp_min(1e-12)  # black pixels get saturation 0, not 0 / 0 = NaN
    diff = x[:, [1, 2, 0]] - x[:, [2, 0, 1]]  # g − b, b − r, r − g: the numerator when R, G, B is the maximum
    hue = (diff.gather(1, arg) / span.clamp_min(1e-12) + 2.0 * arg) / 6.0
    hue = torch.where(span > 0, torch.remainder(hue, 1.0), 0.0)  # grays have hue 0
    return torch.cat((hue, sat, maxc), 1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """(B, 3, H, W) HSV -> RGB by the closed form c = v − v·s·clamp(min(k, 4 − k), 0, 1), k = (n + 6h) mod 6 with
    n = 5, 3, 1 for R, G, B: all channels in one broadcast, no per-sector table."""
    h, s, v = x[:, :1], x[:, 1:2], x[:, 2:]
    n = torch.arange(5.0, 0.0, -2.0, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)  # 5, 3, 1 without a copy
    k = torch.remainder(n + 6.0 * h, 6.0)
    return (v - v * s * torch.minimum(k, 4.0 - k).clamp(0, 1)).clamp(0, 1)


def shift_hue(x: Tensor, shift: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] with the hue of sample i turned by shift[i] (in turns): equal to
    `hsv_to_rgb(rgb_to_hsv(x))` with the hue shifted, but in one pass of cheap kernels. With s·v = max − min (the
    span), c = max − span·clamp(min(k, 4 − k), 0, 1), k = (n + 6h) mod 6, and 6h = num / span + 2·sector, where the
    sector is the first arg-max channel (R, then G on ties) and num its g − b, b − r or r − g. The arg-max comes from
    two comparisons (`max(dim)` with indices is ~15x slower than `amax` on CPU); grays (span 0) get num 0, sector 0."""
    maxc = x.amax(1, keepdim=True)
    span = maxc - x.amin(1, keepdim=True)
    r_low, g_low = (x[:, :2] != maxc).split(1, 1)  # R, G below the maximum
    sector = r_low.long() + (r_low & g_low)  # 0: R is max, 1: G, 2: B (`&`: `all(dim)` is a slow reduction)
    num = (x.roll(-1, 1) - x.roll(-2, 1)).gather(1, sector)  # channel-wise g − b, b − r, r − g, picked per pixel
    h6 = (num / span.clamp_min(1e-12)).add_(sector, alpha=2).add_(6.0 * shift.view(-1, 1, 1, 1))
    n = torch.arange(5.0, 0.0, -2.0, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(h6 + n, 6.0)
    t = torch.minimum(k, 4.0 - k).clamp_(0, 1)
    return torch.addcmul(maxc, span, t, value=-1.0).clamp_(0, 1)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel: int) -> Tensor:
    """(B, C, H, W) blurred with a per-sample σ (B,): one separable grouped convolution, reflect padding."""
    b, c, h, w = x.shape
    t = torch.arange(kernel, device=x.device, dtype=x.dtype) - (kernel - 1) / 2
    weights = torch.exp(-(t**2) / (2 * sigma.view(-1, 1) ** 2))
    weights = (weights / weights.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, k)
    y = F.pad(x.reshape(1, b * c, h, w), (kernel // 2,) * 4, mode="reflect")
    y = F.conv2d(y, weights.view(b * c, 1, 1, kernel), groups=b * c)
    y = F.conv2d(y, weights.view(b * c, 1, kernel, 1), groups=b * c)
    return y.view(b, c, h, w)


class TwoViewAugment:
    """`views` independently augmented, normalised float32 views (B, C, S, S) of a uint8 batch (B, C, H, W): two for
    contrastive views, one for an image–text pair (with the "clip" recipe: random resized crop and flip only).

    `sample_params` draws the parameters of every view at once (rows 0..B−1 are view 1, B..2B−1 view 2);
    `apply` renders them; calling the object does both.
    """

    def __init__(self, recipe: str = "simclr", image_size: int = 32, mean: Sequence[float] = (0.5,),
                 std: Sequence[float] = (0.5,), views: int = 2) -> None:
        if views not in (1, 2):
            raise ValueError(f"views must be 1 or 2, got {views!r}")
        self.views = views
        if recipe not in RECIPES:
            raise ValueError(f"unknown augmentation recipe {recipe!r}; valid: {', '.join(RECIPES)}")
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean and std need one value per channel and std > 0, got {mean} and {std}")
        self.recipe, self.image_size = recipe, image_size
        self.mean, self.std = tuple(map(float, mean)), tuple(map(float, std))
        # a 0.08-area crop of a 32 px image is a ~9 px patch; 0.2 is the usual small-image floor (e.g. SupContrast's
        # CIFAR recipe), 0.08 the Inception/SimCLR ImageNet one
        self.scale = (0.2, 1.0) if image_size <= 64 else (0.08, 1.0)
        self.blur_kernel = (int(0.1 * image_size) // 2) * 2 + 1 if image_size >= 64 else 0  # odd, ~10% of the side
        self._stats: dict[torch.device, tuple[Tensor, Tensor]] = {}  # mean/std per device: no host copy per call

    def __call__(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        params = self.sample_params(x.shape[0], x.shape[-2], x.shape[-1], generator, x.device, x.shape[1])
        return self.apply(x, params)

    def slice_of(self, x: Tensor, generator: torch.Generator, start: int, batch: int) -> tuple[Tensor, Tensor]:
        """Both views of rows [start, start + len(x)) of a global batch of `batch` images, x being those rows: the
        parameters are drawn for the whole global batch (the same stream on every process), then sliced, so how a
        batch is split over processes never changes its augmentation."""
        params = self.sample_params(batch, x.shape[-2], x.shape[-1], generator, x.device, x.shape[1])
        rows = torch.cat([torch.arange(v * batch + start, v * batch + start + len(x)) for v in range(self.views)])
        return self.apply(x, {k: v[rows.to(v.device)] for k, v in params.items()})

    def __repr__(self) -> str:
        return f"TwoViewAugment(recipe={self.recipe!r}, image_size={self.image_size}, mean={self.mean}, std={self.std})"

    # ---- parameters ------------------------------------------------------------------------------------------
    def sample_params(self, batch: int, height: int, width: int, generator: torch.Generator,
                      device: torch.device | str = "cpu", channels: int = 3) -> dict[str, Tensor]:
        """Per-sample parameters for views·batch renders, each a (views·B, ...) tensor on `device` (rows 0..B−1 are
        view 1, B..2B−1 view 2), drawn in a fixed order from `generator` so a seed fixes every view.

        Keys: "clip": box (n, 4), flip; "digits": angle (degrees), tx, ty (fractions of the side), scale, noise
        (n, C, S, S); "simclr": box, flip, brightness, contrast, saturation (factors), hue (turns), gray,
        blur_sigma (pixels, 0 = no blur)."""
        n, device = self.views * batch, torch.device(device)
        if self.recipe == "clip":
            return {"box": self.sample_boxes(n, height, width, generator, device, CLIP_SCALE),
                    "flip": uniform(n, 0, 1, generator, device) < P_FLIP}
        if self.recipe == "digits":
            d, s = DIGITS, self.image_size
            noise = torch.randn((n, channels, s, s), generator=generator, device=generator.device).to(device)
            return {"angle": uniform(n, -d["degrees"], d["degrees"], generator, device),
                    "tx": uniform(n, -d["translate"], d["translate"], generator, device),
                    "ty": uniform(n, -d["translate"], d["translate"], generator, device),
                    "scale": uniform(n, *d["scale"], generator, device), "noise": noise * d["noise"]}
        params = {"box": self.sample_boxes(n, height, width, generator, device),
                  "flip": uniform(n, 0, 1, generator, device) < P_FLIP}
        jitter = uniform(n, 0, 1, generator, device) < P_JITTER
        for name, amount in JITTER.items():
            low, high, identity = (-amount, amount, 0.0) if name == "hue" else (1 - amount, 1 + amount, 1.0)
            # samples without jitter get identity factors, so every sample takes the same arithmetic path
            params[name] = torch.where(jitter, uniform(n, low, high, generator, device), identity)
        params["gray"] = uniform(n, 0, 1, generator, device) < P_GRAY
        blur = uniform(n, 0, 1, generator, device) < P_BLUR
        params["blur_sigma"] = torch.where(blur, uniform(n, 0.1, 2.0, generator, device), 0.0)
        return params

    def sample_boxes(self, n: int, height: int, width: int, generator: torch.Generator, device: torch.device,
                     scale: tuple[float, float] | None = None) -> Tensor:
        """(n, 4) crop boxes x1, y1, x2, y2 in input pixels.

        The area fraction is uniform on `scale` (default: the recipe's); the aspect ratio is log-uniform on RATIO
        narrowed to what fits that area, so no draw is rejected and the area follows the stated scale range exactly.
        """
        area = uniform(n, *(scale or self.scale), generator, device) * (height * width)
        lo = torch.clamp(area / height**2, min=RATIO[0])
        hi = torch.clamp(width**2 / area, max=RATIO[1])
        lo = torch.minimum(lo, hi)
        ratio = torch.exp(lo.log() + uniform(n, 0, 1, generator, device) * (hi.log() - lo.log()))
        w = torch.sqrt(area * ratio).clamp(max=width)
        h = torch.sqrt(area / ratio).clamp(max=height)
        x1 = uniform(n, 0, 1, generator, device) * (width - w)
        y1 = uniform(n, 0, 1, generator, device) * (height - h)
        return torch.stack((x1, y1, x1 + w, y1 + h), 1)

    # ---- rendering -------------------------------------------------------------------------------------------
    def apply(self, x: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """Render the views of uint8 x (B, C, H, W) with `params` -> `views` float32 (B, C, S, S)."""
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise ValueError(f"TwoViewAugment expects a uint8 (B, C, H, W) batch, got {x.dtype} {tuple(x.shape)}")
        if x.shape[1] != len(self.mean):
            raise ValueError(f"batch has {x.shape[1]} channels, mean/std have {len(self.mean)}")
        if self.recipe == "digits":
            out = self.render_digits(x.float() / 255.0, params)
        elif self.recipe == "clip":
            out = self.crop_and_flip(x.float(), params) / 255.0
        else:  # the 1/255 rides on the brightness factor: one pass over the images fewer
            out = self.render_simclr(x.float(), params)
        shift, scale = self.stats_on(x.device)
        views = torch.addcmul(shift, out, scale).chunk(self.views)  # (out − mean) / std as one multiply-add
        return tuple(v.contiguous() for v in views)

    def stats_on(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """−mean/std and 1/std as (1, C, 1, 1) tensors on `device`, made once (a host-to-device copy syncs CUDA)."""
        if device not in self._stats:
            mean = torch.tensor(self.mean, dtype=torch.float64).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float64).view(1, -1, 1, 1)
            self._stats[device] = ((-mean / std).float().to(device), (1.0 / std).float().to(device))
        return self._stats[device]

    def render_simclr(self, images: Tensor, p: dict[str, Tensor]) -> Tensor:
        """Crop, flip, jitter, grayscale (and blur at >= 64 px) of float images in [0, 255] -> (2B, C, S, S) in
        [0, 1]. Per-sample choices are blends or gathers with per-sample weights, never `torch.where` over whole
        images (a slow kernel on CPU) nor per-sample Python."""
        x = self.crop_and_flip(images, p)
        x = self.jitter(x, p, scale=1 / 255)
        if x.shape[1] == 3:
            x = torch.lerp(x, gray(x), p["gray"].to(x.dtype).view(-1, 1, 1, 1))  # weight 0 or 1: exact choice
        if self.blur_kernel:
            # σ = 0 marks "no blur" and would divide by zero in the kernel; those rows are discarded by the lerp below
            blurred = gaussian_blur(x, p["blur_sigma"].clamp(min=0.1), self.blur_kernel)
            x = torch.lerp(x, blurred, (p["blur_sigma"] > 0).to(x.dtype).view(-1, 1, 1, 1))
        return x

    def crop_and_flip(self, images: Tensor, p: dict[str, Tensor]) -> Tensor:
        """(B, C, H, W) float -> (views·B, C, S, S): each row's box resized to S (antialiased), flipped where asked."""
        b, s, n = images.shape[0], self.image_size, p["box"].shape[0]
        source = torch.arange(n, device=images.device, dtype=images.dtype).remainder(b).unsqueeze(1)
        # sampling_ratio=-1 averages ceil(box/S) samples per output pixel: an antialiased downscale
        x = roi_align(images, torch.cat((source, p["box"]), 1), (s, s), spatial_scale=1.0, sampling_ratio=-1,
                      aligned=True)
        return flip_columns(x, p["flip"])

    @staticmethod
    def jitter(x: Tensor, p: dict[str, Tensor], scale: float = 1.0) -> Tensor:
        """Brightness, contrast, saturation, hue in this fixed order (torchvision shuffles the order per call; one
        fixed order keeps a single vectorised pass). Saturation and hue only on RGB. `scale` multiplies the input
        first (1/255 for [0, 255] images), folded into the brightness factor. Works in place on its own temporaries."""
        x = (x * (p["brightness"] * scale).view(-1, 1, 1, 1)).clamp_(0, 1)
        # mean luma = luma of the channel means: no per-pixel gray image (and no host-to-device copy, a CUDA sync)
        mean = gray(x.mean(dim=(2, 3), keepdim=True)) if x.shape[1] == 3 else x.mean(dim=(1, 2, 3), keepdim=True)
        x = torch.lerp(mean, x, p["contrast"].view(-1, 1, 1, 1)).clamp_(0, 1)  # c·x + (1 − c)·mean
        if x.shape[1] != 3:
            return x
        x = torch.lerp(gray(x), x, p["saturation"].view(-1, 1, 1, 1)).clamp_(0, 1)
        return shift_hue(x, p["hue"])

    def render_digits(self, images: Tensor, p: dict[str, Tensor]) -> Tensor:
        """Affine jitter (rotation, translation, scale about the centre) plus additive Gaussian noise of images in
        [0, 1] (B, C, H, W) -> (views·B, C, S, S) in [0, 1]; bilinear sampling, zero padding (the digits' background
        is 0, so a shifted digit gains no border)."""
        n, s = p["angle"].shape[0], self.image_size
        rad = p["angle"] * (math.pi / 180)
        # theta samples the input: dividing by the scale enlarges the digit by that scale in the output
        cos, sin = torch.cos(rad) / p["scale"], torch.sin(rad) / p["scale"]
        # theta maps output to input coordinates in [-1, 1]: a shift of f·side is 2f there
        theta = torch.stack((torch.stack((cos, -sin, 2 * p["tx"]), 1), torch.stack((sin, cos, 2 * p["ty"]), 1)), 1)
        grid = F.affine_grid(theta, [n, images.shape[1], s, s], align_corners=False)
        x = F.grid_sample(images.repeat(self.views, 1, 1, 1), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)
        return (x + p["noise"]).clamp(0, 1)
