"""Occluding and mixing ops on batches of hard views: Cutout, joint cutout, CutMix, joint cut-occlude, MixUp.

Our versions of the ops MultiAugs (Zhou et al. 2024, lib/utils/augments.py) combines, on whole
batches of normalised crops [B, C, H, W] on any device. MultiAugs loops over images and boxes in
Python; here every box op is a `Boxes` plan, per image R boxes `[x0, x1) x [y0, y1)` in input
pixels, each either filled with 0 (the mean colour once normalised, MultiAugs' fill) or copied
from a source crop at an offset, and `paste` applies a plan with one gather: each pixel takes the
last box that covers it. The targets are left unchanged, as MultiAugs leaves them: these ops hide
or replace pixels without moving any.

Lengths come as fractions of the crop height (`HardOpsConfig`). All randomness is drawn from the
caller's `torch.Generator` on its device in a fixed order (small per-box draws, moved to the
images' device), so the loop's saved generator makes a resumed run draw the same boxes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from components.config import HardOpsConfig


class Boxes(NamedTuple):
    """R boxes per image [B, R]: corners (x1, y1 exclusive; empty when x1 <= x0), source crop (-1: fill 0), offset."""

    x0: torch.Tensor
    y0: torch.Tensor
    x1: torch.Tensor
    y1: torch.Tensor
    source: torch.Tensor
    dx: torch.Tensor
    dy: torch.Tensor


def paste(images: torch.Tensor, boxes: Boxes) -> torch.Tensor:
    """A copy of `images` with every box filled: pixel (x, y) of a box reads (x + dx, y + dy) of its source crop.

    Where boxes overlap the later box (higher index) wins; a source pixel outside the image, or a box
    without a source, gives 0.
    """
    batch, channels, height, width = images.shape
    if boxes.x0.numel() == 0:
        return images.clone()
    dev = images.device
    x0, y0, x1, y1, source, dx, dy = (t.to(dev, torch.long) for t in boxes)
    count = x0.shape[1]
    xs = torch.arange(width, device=dev)
    ys = torch.arange(height, device=dev)
    along_x = (xs >= x0[..., None]) & (xs < x1[..., None])  # [B, R, W]
    along_y = (ys >= y0[..., None]) & (ys < y1[..., None])  # [B, R, H]
    order = torch.arange(1, count + 1, device=dev, dtype=torch.int16).view(1, count, 1, 1)
    covered = along_y[..., :, None] & along_x[..., None, :]  # [B, R, H, W]
    winner = (covered.to(torch.int16) * order).amax(dim=1).long() - 1  # [B, H, W], -1: no box
    hit = winner >= 0
    pick = winner.clamp(min=0).view(batch, -1)
    src = source.gather(1, pick).view(batch, height, width)
    sx = xs.view(1, 1, width) + dx.gather(1, pick).view(batch, height, width)
    sy = ys.view(1, height, 1) + dy.gather(1, pick).view(batch, height, width)
    readable = (src >= 0) & (sx >= 0) & (sx < width) & (sy >= 0) & (sy < height)
    flat = (src.clamp(min=0) * height + sy.clamp(0, height - 1)) * width + sx.clamp(0, width - 1)
    pixels = images.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    taken = pixels[flat.view(-1)].view(batch, height, width, channels)
    taken = torch.where(readable[..., None], taken, torch.zeros((), dtype=images.dtype, device=dev))
    out = torch.where(hit[..., None], taken, images.permute(0, 2, 3, 1))
    return out.permute(0, 3, 1, 2).contiguous(memory_format=_format_of(images))


def _format_of(images: torch.Tensor) -> torch.memory_format:
    return (
        torch.channels_last
        if images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
        else torch.contiguous_format
    )


def _rand(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64)


def half_sides(shape: tuple[int, ...], height: int, cfg: HardOpsConfig, generator: torch.Generator) -> torch.Tensor:
    """Integer half sides [*shape, 2] (x, y) of boxes, uniform in `cfg.box_half_size` times the crop height."""
    low, high = (bound * height for bound in cfg.box_half_size)
    return (low + (high - low) * _rand((*shape, 2), generator)).floor().clamp(min=1).long()


def _clipped(
    centre: torch.Tensor, half: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Box corners (x0, y0, x1, y1) of centres [B, R, 2] and half sides [B, R, 2], cut to the image."""
    height, width = size
    x0 = (centre[..., 0] - half[..., 0]).clamp(0, width)
    x1 = (centre[..., 0] + half[..., 0]).clamp(0, width)
    y0 = (centre[..., 1] - half[..., 1]).clamp(0, height)
    y1 = (centre[..., 1] + half[..., 1]).clamp(0, height)
    return x0, y0, x1, y1


def _anywhere(batch: int, count: int, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Box centres [B, R, 2] uniform over the crop's pixels."""
    height, width = size
    u = _rand((batch, count, 2), generator)
    return torch.stack([(u[..., 0] * width).floor(), (u[..., 1] * height).floor()], dim=-1).long()


def cutout_boxes(batch: int, size: tuple[int, int], cfg: HardOpsConfig, generator: torch.Generator) -> Boxes:
    """Cutout: `cfg.cutout_holes` boxes per crop, centred anywhere, filled with the mean colour."""
    centre = _anywhere(batch, cfg.cutout_holes, size, generator)
    half = half_sides((batch, cfg.cutout_holes), size[0], cfg, generator).to(centre.device)
    none = torch.full_like(centre[..., 0], -1)
    return Boxes(*_clipped(centre, half, size), none, torch.zeros_like(none), torch.zeros_like(none))


def partners(batch: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of the batch: crop b mixes with crop partners[b] (itself with chance 1/B, as MultiAugs)."""
    return torch.randperm(batch, generator=generator, device=generator.device)


def cutmix_boxes(batch: int, size: tuple[int, int], cfg: HardOpsConfig, generator: torch.Generator) -> Boxes:
    """CutMix: `cfg.cutmix_holes` boxes per crop, centred anywhere, copied from the same place of a partner crop."""
    centre = _anywhere(batch, cfg.cutmix_holes, size, generator)
    half = half_sides((batch, cfg.cutmix_holes), size[0], cfg, generator).to(centre.device)
    source = partners(batch, generator).to(centre.device)[:, None].expand(batch, cfg.cutmix_holes)
    zeros = torch.zeros_like(source)
    return Boxes(*_clipped(centre, half, size), source, zeros, zeros)


def pick_joints(valid: torch.Tensor, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` keypoints per person drawn with replacement among its valid ones [B, count]; who had any [B]."""
    valid = valid.to(generator.device, torch.bool)
    has_any = valid.any(dim=1)
    weights = torch.where(has_any[:, None], valid.double(), torch.ones_like(valid, dtype=torch.float64))
    return torch.multinomial(weights, count, replacement=True, generator=generator), has_any


def _jittered(
    keypoints: torch.Tensor, sample: torch.Tensor, joint: torch.Tensor, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    """Integer box centres [B, R, 2]: keypoints[sample, joint] plus Gaussian jitter of std `sigma` px."""
    points = keypoints.to(generator.device, torch.float64)[sample, joint]
    noise = torch.randn(points.shape, generator=generator, device=generator.device, dtype=torch.float64)
    return (points + sigma * noise).round().long()


def joint_cutout_boxes(
    keypoints: torch.Tensor,
    valid: torch.Tensor,
    size: tuple[int, int],
    cfg: HardOpsConfig,
    generator: torch.Generator,
) -> Boxes:
    """Joint cutout: boxes around `cfg.joint_cutout_joints` valid keypoints (drawn with replacement, centres
    jittered), filled with the mean colour; `keypoints` [B, K, 2] in input pixels, `valid` [B, K]."""
    batch, count = keypoints.shape[0], cfg.joint_cutout_joints
    joint, has_any = pick_joints(valid, count, generator)
    sample = torch.arange(batch, device=joint.device)[:, None].expand(batch, count)
    centre = _jittered(keypoints, sample, joint, cfg.joint_jitter * size[0], generator)
    half = half_sides((batch, count), size[0], cfg, generator) * has_any[:, None, None]
    none = torch.full_like(joint, -1)
    return Boxes(*_clipped(centre, half, size), none, torch.zeros_like(none), torch.zeros_like(none))


def joint_cutmix_boxes(
    keypoints: torch.Tensor,
    valid: torch.Tensor,
    size: tuple[int, int],
    cfg: HardOpsConfig,
    generator: torch.Generator,
) -> Boxes:
    """Joint cut-occlude (SSPCM's SSCO, as MultiAugs uses it): per crop, `cfg.joint_cutmix_joints` boxes around
    its valid keypoints are replaced by the boxes around valid keypoints of one random crop of the batch
    (itself included), the source box's size kept; centres jittered as in joint cutout."""
    batch, count = keypoints.shape[0], cfg.joint_cutmix_joints
    dev = generator.device
    source = torch.randint(batch, (batch,), generator=generator, device=dev)
    dst_joint, dst_any = pick_joints(valid, count, generator)
    src_joint, src_any = pick_joints(valid.to(dev)[source], count, generator)
    rows = torch.arange(batch, device=dev)[:, None].expand(batch, count)
    sigma = cfg.joint_jitter * size[0]
    dst = _jittered(keypoints, rows, dst_joint, sigma, generator)
    src = _jittered(keypoints, source[:, None].expand(batch, count), src_joint, sigma, generator)
    used = (dst_any & src_any)[:, None, None]
    half = half_sides((batch, count), size[0], cfg, generator) * used
    shift = src - dst
    return Boxes(*_clipped(dst, half, size), source[:, None].expand(batch, count), shift[..., 0], shift[..., 1])


def mixup_weights(batch: int, cfg: HardOpsConfig, generator: torch.Generator) -> torch.Tensor:
    """Per crop, the share it keeps of itself: 1 - (1 - min_keep) Beta(alpha, alpha), so in [min_keep, 1].

    MultiAugs draws one Beta per batch; we draw one per crop. torch has no seeded Beta, so numpy
    draws it from a seed taken off `generator` (one draw: the generator still decides everything).
    """
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device).item())
    lam = np.random.default_rng(seed).beta(cfg.mixup_alpha, cfg.mixup_alpha, size=batch)
    return torch.from_numpy(1.0 - (1.0 - cfg.mixup_min_keep) * lam)


def mixup(images: torch.Tensor, cfg: HardOpsConfig, generator: torch.Generator) -> torch.Tensor:
    """MixUp between crops: each crop blended with a partner crop, keeping at least `min_keep` of itself."""
    batch = images.shape[0]
    keep = mixup_weights(batch, cfg, generator).to(images.device, images.dtype).view(batch, 1, 1, 1)
    partner = partners(batch, generator).to(images.device)
    return keep * images + (1.0 - keep) * images[partner]
