"""RandAugment- and TrivialAugment-style photometric policies, on whole batches of RGB crops in [0, 1].

The ops and their ranges are MultiAugs' (Zhou et al. 2024). RandAugment (lib/utils/rand_augment.py,
`augment_list` and `RandAugment`, after the TPU EfficientNet AutoAugment code): N ops drawn with
repetition from AutoContrast, Equalize, Invert, Posterize (0-4), Solarize (0-256), SolarizeAdd
(0-110), Color, Contrast, Brightness and Sharpness (0-0.9 either way of 1), all at one magnitude m
of 30 (value = m / 30 of the range; MultiAugs: N = 2, m = 20). TrivialAugment (lib/utils/aug_lib.py,
`TrivialAugment` over its `fixed_standard` space): one op from Identity, AutoContrast, Equalize,
Solarize, Color, Posterize (4-8 bits), Contrast, Brightness and Sharpness (0.1-1.9), at a level
uniform over 0..30. Geometric ops are left out, as both MultiAugs lists leave them out for pose
("keypoint-sensitive transforms"): the hard view's geometry is its crop (and the `af` op), whose
targets follow it.

A draw fixes each image's op and the op's parameter (`PolicyDraws.value`: the enhance factor, the
bits kept, the solarize threshold or the levels added), so applying is the same for both policies.
MultiAugs applies the PIL ops to one image at a time in the loader; here each op is written on
tensors for a whole batch and every image takes its own: each round computes every op for the
batch and selects per image with `torch.where`, which keeps the device free of host syncs. The ops
follow PIL's definitions on 8-bit levels (Equalize: PIL's lookup table; Sharpness: PIL's SMOOTH
kernel with the border kept; Contrast: about the mean grey level) and match PIL within one level.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

OPS: tuple[str, ...] = (
    "identity",
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
RANDAUGMENT_OPS = OPS[1:]  # rand_augment.py's augment_list
TRIVIALAUGMENT_OPS = (
    "identity",
    "autocontrast",
    "equalize",
    "solarize",
    "color",
    "posterize",
    "contrast",
    "brightness",
    "sharpness",
)  # aug_lib.py's fixed_standard space
ENHANCERS = ("color", "contrast", "brightness", "sharpness")
MAGNITUDE_LEVELS = 30  # both policies' magnitude scale
_LUMA = (0.299, 0.587, 0.114)  # PIL's RGB -> L


class PolicyDraws(NamedTuple):
    """Per image and round: op index into OPS [B, N] and the op's parameter [B, N] (float64)."""

    op: torch.Tensor
    value: torch.Tensor


def _pick(names: tuple[str, ...], shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Ops drawn uniformly with repetition from `names`, as indices into OPS."""
    index = torch.tensor([OPS.index(name) for name in names], device=generator.device)
    return index[torch.randint(len(names), shape, generator=generator, device=generator.device)]


def _is(op: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    return torch.isin(op, torch.tensor([OPS.index(name) for name in names], device=op.device))


def randaugment_draws(batch: int, num_ops: int, magnitude: int, generator: torch.Generator) -> PolicyDraws:
    """`num_ops` ops per image (random.choices over RANDAUGMENT_OPS) at `magnitude` of 30; enhancers go
    either way of 1 with a fair coin (random.choice([-1, 1]))."""
    shape = (batch, num_ops)
    op = _pick(RANDAUGMENT_OPS, shape, generator)
    down = torch.rand(shape, generator=generator, device=generator.device) < 0.5
    level = magnitude / MAGNITUDE_LEVELS
    sign = 1.0 - 2.0 * down.to(torch.float64)
    value = torch.zeros(shape, dtype=torch.float64, device=op.device)
    value = torch.where(_is(op, ENHANCERS), 1.0 + 0.9 * level * sign, value)
    value = torch.where(op == OPS.index("posterize"), float(max(2, 6 - int(4 * level))), value)
    value = torch.where(op == OPS.index("solarize"), 256.0 - 256.0 * level, value)
    value = torch.where(op == OPS.index("solarize_add"), 110.0 * level, value)
    return PolicyDraws(op, value)


def trivialaugment_draws(batch: int, generator: torch.Generator) -> PolicyDraws:
    """One op per image (random.choices over TRIVIALAUGMENT_OPS) at a level uniform over 0..30."""
    op = _pick(TRIVIALAUGMENT_OPS, (batch, 1), generator)
    level = torch.randint(MAGNITUDE_LEVELS + 1, (batch, 1), generator=generator, device=generator.device).double()
    value = torch.zeros((batch, 1), dtype=torch.float64, device=op.device)
    value = torch.where(_is(op, ENHANCERS), 0.1 + 1.8 * level / MAGNITUDE_LEVELS, value)
    value = torch.where(op == OPS.index("posterize"), 8.0 - (4 * level) // MAGNITUDE_LEVELS, value)
    value = torch.where(op == OPS.index("solarize"), 256.0 - (256 * level) // MAGNITUDE_LEVELS, value)
    return PolicyDraws(op, value)


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


def apply_op(images: torch.Tensor, name: str, value: torch.Tensor) -> torch.Tensor:
    """Op `name` on every image of the batch, each with its own parameter `value` [B] (see PolicyDraws)."""
    if name == "identity":
        return images
    if name == "autocontrast":
        return autocontrast(images)
    if name == "equalize":
        return equalize(images)
    if name == "invert":
        return 1.0 - images
    if name == "posterize":
        return posterize(images, value)
    if name == "solarize":
        return solarize(images, value)
    if name == "solarize_add":
        added = (images + _column(value / 255.0, images)).clamp(0.0, 1.0)
        return solarize(added, torch.full_like(value, 128.0))
    if name == "color":
        return _blend(_grey(images).expand_as(images), images, value)
    if name == "contrast":
        mean = (_levels(_grey(images)).mean(dim=(1, 2, 3), keepdim=True) + 0.5).floor() / 255.0
        return _blend(mean.expand_as(images), images, value)
    if name == "brightness":
        return _blend(torch.zeros_like(images), images, value)
    if name == "sharpness":
        return sharpen(images, value)
    raise ValueError(f"unknown photometric op {name!r}; expected one of {OPS}")


def apply_policy(images: torch.Tensor, draws: PolicyDraws) -> torch.Tensor:
    """RGB images [B, 3, H, W] in [0, 1] through each image's ops, round after round."""
    out = images
    for round_ in range(draws.op.shape[1]):
        op = draws.op[:, round_].to(images.device)
        value = draws.value[:, round_].to(images.device)
        mixed = out
        for index, name in enumerate(OPS):
            mixed = torch.where((op == index).view(-1, 1, 1, 1), apply_op(out, name, value), mixed)
        out = mixed
    return out
