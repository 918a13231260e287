"""RandAugment- and TrivialAugment-style photometric policies, on whole batches of RGB crops in [0, 1].

The op list and magnitude ranges are those MultiAugs' RandAugment applies (lib/utils/rand_augment.py,
`augment_list`, after the TPU EfficientNet AutoAugment code): AutoContrast, Equalize, Invert,
Posterize (0-4), Solarize (0-256), SolarizeAdd (0-110), Color, Contrast, Brightness and Sharpness
(0-0.9 either way of 1). A magnitude m of 30 maps to `m / 30` of each range. RandAugment applies
`N` ops with one fixed magnitude (MultiAugs: N = 2, m = 20); TrivialAugment one op with a
uniform magnitude in 0..30. Geometric ops are left out, as MultiAugs' list leaves them: the hard
view's geometry is its crop (and the `af` op), whose targets follow it.

MultiAugs applies the PIL ops to one image at a time in the loader. Here each op is written on
tensors for a whole batch and every image takes its own op: each round computes every op for the
batch and selects per image with `torch.where`, which keeps the device free of host syncs. The
ops follow PIL's definitions on 8-bit levels (Equalize: PIL's lookup table; Sharpness: PIL's
SMOOTH kernel with the border kept; Contrast: about the mean grey level).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

OPS: tuple[str, ...] = (
    "autocontrast",
    "equalize",
    "invert",
    "posterize",
    "solarize",
    "solarize_add",
    "color",
    "contrast",
    "brightness",
    "sharpness",
)
MAGNITUDE_LEVELS = 30  # MultiAugs' magnitude scale: val = m / 30 * (max - min) + min
_ENHANCE_RANGE = 0.9
_SOLARIZE_ADD_RANGE = 110.0
_POSTERIZE_RANGE = 4.0
_LUMA = (0.299, 0.587, 0.114)  # PIL's RGB -> L


class PolicyDraws(NamedTuple):
    """Per image and round: op index into OPS [B, N], magnitude as a fraction of its range [B, N], sign (+1/-1) [B, N]."""

    op: torch.Tensor
    level: torch.Tensor
    sign: torch.Tensor


def _signs(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(shape, generator=generator, device=generator.device) < 0.5
    return torch.where(flip, -1.0, 1.0).to(torch.float64)


def randaugment_draws(batch: int, num_ops: int, magnitude: int, generator: torch.Generator) -> PolicyDraws:
    """`num_ops` ops per image, uniform over OPS with repetition (random.choices), all at `magnitude` of 30."""
    dev = generator.device
    op = torch.randint(len(OPS), (batch, num_ops), generator=generator, device=dev)
    level = torch.full((batch, num_ops), magnitude / MAGNITUDE_LEVELS, dtype=torch.float64, device=dev)
    return PolicyDraws(op, level, _signs((batch, num_ops), generator))


def trivialaugment_draws(batch: int, generator: torch.Generator) -> PolicyDraws:
    """One op per image, uniform over OPS, at a magnitude uniform over 0..30."""
    dev = generator.device
    op = torch.randint(len(OPS), (batch, 1), generator=generator, device=dev)
    level = torch.randint(MAGNITUDE_LEVELS + 1, (batch, 1), generator=generator, device=dev) / MAGNITUDE_LEVELS
    return PolicyDraws(op, level.to(torch.float64), _signs((batch, 1), generator))


def _column(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device, like.dtype).view(-1, 1, 1, 1)


def _levels(images: torch.Tensor) -> torch.Tensor:
    """8-bit levels 0..255 of images in [0, 1] (PIL's images are 8-bit)."""
    return (images * 255.0).round().clamp(0, 255)


def _grey(images: torch.Tensor) -> torch.Tensor:
    luma = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * luma).sum(dim=1, keepdim=True)


def _blend(degenerate: torch.Tensor, images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance: degenerate + factor (image - degenerate), clipped."""
    return (degenerate + _column(factor, images) * (images - degenerate)).clamp(0.0, 1.0)


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """Each channel stretched to span 0..1 (PIL's autocontrast with no cutoff); flat channels kept."""
    low = images.amin(dim=(2, 3), keepdim=True)
    high = images.amax(dim=(2, 3), keepdim=True)
    span = high - low
    return torch.where(span > 0, (images - low) / span.clamp(min=1e-12), images)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Per channel histogram equalisation with PIL's lookup table (ImageOps.equalize), on 8-bit levels."""
    batch, channels, height, width = images.shape
    levels = _levels(images).long().view(batch, channels, -1)
    counts = torch.zeros(batch, channels, 256, dtype=torch.long, device=images.device)
    counts.scatter_add_(2, levels, torch.ones_like(levels))
    top = (torch.arange(256, device=images.device) * (counts > 0)).argmax(dim=2, keepdim=True)
    step = (height * width - counts.gather(2, top)) // 255  # [B, C, 1]
    before = counts.cumsum(dim=2) - counts
    table = ((before + step // 2) // step.clamp(min=1)).clamp(max=255)
    table = torch.where(step > 0, table, torch.arange(256, device=images.device).expand_as(table))
    return table.gather(2, levels).view_as(images).to(images.dtype) / 255.0


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits` [B] bits of each 8-bit level."""
    drop = _column(8 - bits, images)
    unit = torch.pow(2.0, drop)
    return torch.floor(_levels(images) / unit) * unit / 255.0


def solarize(images: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert the levels at or above `threshold` [B] (0..256)."""
    return torch.where(_levels(images) >= _column(threshold, images), 1.0 - images, images)


def sharpen(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's Sharpness: blend with the SMOOTH-filtered image (border pixels kept as they are)."""
    channels = images.shape[1]
    kernel = torch.ones(3, 3, dtype=images.dtype, device=images.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(channels, 1, 3, 3)
    smooth = F.conv2d(images, kernel, padding=1, groups=channels)
    border = torch.ones_like(images[:1, :1], dtype=torch.bool)
    border[..., 1:-1, 1:-1] = False
    degenerate = torch.where(border, images, smooth)
    return _blend(degenerate, images, factor)


def apply_op(images: torch.Tensor, name: str, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Op `name` on every image of the batch, each at its own level [B] (0..1 of the op's range) and sign [B]."""
    factor = 1.0 + sign * level * _ENHANCE_RANGE
    if name == "autocontrast":
        return autocontrast(images)
    if name == "equalize":
        return equalize(images)
    if name == "invert":
        return 1.0 - images
    if name == "posterize":
        return posterize(images, (6 - (level * _POSTERIZE_RANGE).floor()).clamp(min=2))
    if name == "solarize":
        return solarize(images, 256.0 - 256.0 * level)
    if name == "solarize_add":
        added = (images + _column(level * _SOLARIZE_ADD_RANGE / 255.0, images)).clamp(0.0, 1.0)
        return solarize(added, torch.full_like(level, 128.0))
    if name == "color":
        return _blend(_grey(images).expand_as(images), images, factor)
    if name == "contrast":
        mean = (_levels(_grey(images)).mean(dim=(1, 2, 3), keepdim=True) + 0.5).floor() / 255.0
        return _blend(mean.expand_as(images), images, factor)
    if name == "brightness":
        return _blend(torch.zeros_like(images), images, factor)
    if name == "sharpness":
        return sharpen(images, factor)
    raise ValueError(f"unknown photometric op {name!r}; expected one of {OPS}")


def apply_policy(images: torch.Tensor, draws: PolicyDraws) -> torch.Tensor:
    """RGB images [B, 3, H, W] in [0, 1] through each image's ops, round after round."""
    out = images
    for round_ in range(draws.op.shape[1]):
        op = draws.op[:, round_].to(images.device)
        level, sign = draws.level[:, round_].to(images.device), draws.sign[:, round_].to(images.device)
        mixed = out
        for index, name in enumerate(OPS):
            mixed = torch.where((op == index).view(-1, 1, 1, 1), apply_op(out, name, level, sign), mixed)
        out = mixed
    return out
