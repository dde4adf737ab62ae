"""Multi-crop and MR-specific augmentations for self-supervised pretraining.

Colour jitter and solarisation (the natural-image DINO recipe) make no sense for grey-scale MR.
What varies between MR acquisitions is: window/level and contrast, non-linear intensity response
(gamma), coil sensitivity (a smooth multiplicative bias field), Rician noise in magnitude images,
and resolution (blur). Those are the invariances we teach. Inputs are preprocessed slices in
[0, 1], shape [1, H, W].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms import v2


@dataclass
class MRAugmentConfig:
    p_contrast: float = 0.8  # random scale/shift of intensities
    p_gamma: float = 0.5
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_bias_field: float = 0.5
    bias_field_strength: float = 0.3  # max relative amplitude of the smooth field
    p_noise: float = 0.5
    noise_std: tuple[float, float] = (0.0, 0.05)  # Rician noise sigma, in [0,1] intensity units
    p_blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    p_flip: float = 0.5


def _uniform(lo: float, hi: float, g: torch.Generator | None) -> float:
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def bias_field(h: int, w: int, strength: float, g: torch.Generator | None = None) -> torch.Tensor:
    """Smooth multiplicative field exp(sum of low-order 2D polynomial terms): [1, H, W]."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    terms = torch.stack([xx, yy, xx * yy, xx**2, yy**2])  # [5, H, W]
    coef = (torch.rand(5, generator=g) * 2 - 1) * strength
    return torch.exp((coef[:, None, None] * terms).sum(0, keepdim=True))


def rician_noise(x: torch.Tensor, sigma: float, g: torch.Generator | None = None) -> torch.Tensor:
    """Magnitude of a complex signal with Gaussian noise on both channels: [1,H,W] -> [1,H,W]."""
    n1 = torch.randn(x.shape, generator=g) * sigma
    n2 = torch.randn(x.shape, generator=g) * sigma
    return torch.sqrt((x + n1) ** 2 + n2**2)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2 * sigma))
    k = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(k**2) / (2 * sigma**2))
    k = k / k.sum()
    x = x[None]  # [1, 1, H, W]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
    return x[0]


class MRIntensityAugment:
    """Random MR intensity augmentations on a [1, H, W] slice in [0, 1]."""

    def __init__(self, cfg: MRAugmentConfig | None = None) -> None:
        self.cfg = cfg or MRAugmentConfig()

    def __call__(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        c = self.cfg
        h, w = x.shape[-2:]
        if torch.rand((), generator=g) < c.p_flip:
            x = x.flip(-1)
        if torch.rand((), generator=g) < c.p_bias_field:
            x = x * bias_field(h, w, c.bias_field_strength, g)
        if torch.rand((), generator=g) < c.p_gamma:
            x = x.clamp_min(0).pow(_uniform(*c.gamma_range, g))
        if torch.rand((), generator=g) < c.p_contrast:
            x = x * _uniform(0.7, 1.3, g) + _uniform(-0.15, 0.15, g)
        if torch.rand((), generator=g) < c.p_blur:
            x = gaussian_blur(x, _uniform(*c.blur_sigma, g))
        if torch.rand((), generator=g) < c.p_noise:
            x = rician_noise(x.clamp_min(0), _uniform(*c.noise_std, g), g)
        return x.clamp(0, 1.5)


@dataclass
class MultiCropConfig:
    global_size: int = 224
    local_size: int = 96
    n_local: int = 8  # the paper: 2 global + 8 local crops
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)


class MultiCrop:
    """One slice -> 2 global + N local augmented crops (each [1, h, w], normalised)."""

    def __init__(self, cfg: MultiCropConfig, aug: MRAugmentConfig | None = None) -> None:
        self.cfg = cfg
        self.intensity = MRIntensityAugment(aug)
        self.global_crop = v2.RandomResizedCrop(cfg.global_size, scale=cfg.global_scale, antialias=True)
        self.local_crop = v2.RandomResizedCrop(cfg.local_size, scale=cfg.local_scale, antialias=True)

    def __call__(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        # x: [1, H, W] in [0, 1]
        globals_ = [normalize(self.intensity(self.global_crop(x))) for _ in range(2)]
        locals_ = [normalize(self.intensity(self.local_crop(x))) for _ in range(self.cfg.n_local)]
        return {"global": globals_, "local": locals_}


# fixed affine normalisation of [0,1] windowed MR intensities to roughly zero mean, unit variance
MR_MEAN, MR_STD = 0.25, 0.25


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - MR_MEAN) / MR_STD


def sample_masks(
    batch: int,
    n_patches: int,
    ratio: tuple[float, float] = (0.1, 0.5),
    prob: float = 0.5,
    g: torch.Generator | None = None,
) -> torch.Tensor:
    """iBOT masks [B, N] bool: a fraction ``prob`` of images get a random ratio of masked patches."""
    masks = torch.zeros(batch, n_patches, dtype=torch.bool)
    for i in range(batch):
        if torch.rand((), generator=g) < prob:
            r = _uniform(*ratio, g)
            k = max(1, round(r * n_patches))
            masks[i, torch.randperm(n_patches, generator=g)[:k]] = True
    if not masks.any():  # iBOT needs at least one masked patch per step
        masks[0, torch.randint(n_patches, (1,), generator=g)] = True
    return masks
