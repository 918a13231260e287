"""Keypoint-Mix: paste the patch around one keypoint over the patch around a different keypoint.

For each person chosen with probability `prob`, up to `num_keypoints` of its valid keypoints are
destinations; each gets the square patch (side `patch_size * person_height`) centred on a source
keypoint of a different type, taken from any person of the batch (`sources: batch`) or from the
same person (`sources: same_person`). Targets are left unchanged, so
a wrist-looking patch at the elbow must still be called an elbow: the network has to use the
relations between keypoints to tell them apart.

Vectorised: every (mix, offset) pair becomes one row of a source/destination index grid and all
pixels move with one gather and one index-put over [B, C, H*W]. Patches that overlap resolve
deterministically (the later mix wins, decided by a scatter-max over the mix index).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from components.config import KeypointMixConfig


class MixPlan(NamedTuple):
    """Which patches moved: destination (sample, keypoint) <- source (sample, keypoint), side in px."""

    dst_sample: torch.Tensor
    dst_keypoint: torch.Tensor
    src_sample: torch.Tensor
    src_keypoint: torch.Tensor
    side: torch.Tensor


def plan_mixes(
    valid: torch.Tensor, person_height: torch.Tensor, cfg: KeypointMixConfig, generator: torch.Generator
) -> MixPlan:
    """Draw destinations and sources; all randomness comes from `generator`, in a fixed order."""
    batch, num_kp = valid.shape
    dev = generator.device
    valid = valid.to(dev, torch.bool)
    apply = torch.rand(batch, generator=generator, device=dev) < cfg.prob
    # random subset of each applied person's valid keypoints: the `num_keypoints` smallest scores
    scores = torch.rand(batch, num_kp, generator=generator, device=dev).masked_fill(~valid, 2.0)
    count = min(cfg.num_keypoints, num_kp)
    picked_scores, picked = scores.topk(count, dim=1, largest=False)
    chosen = (picked_scores < 2.0) & apply[:, None]
    dst_sample = torch.arange(batch, device=dev)[:, None].expand(batch, count)[chosen]
    dst_keypoint = picked[chosen]
    # sources: any valid keypoint of another type, of any person or of the destination's own person
    flat_valid = valid.reshape(-1)
    flat_type = torch.arange(num_kp, device=dev).repeat(batch)
    src_scores = torch.rand(dst_sample.numel(), batch * num_kp, generator=generator, device=dev)
    allowed = flat_valid[None, :] & (flat_type[None, :] != dst_keypoint[:, None])
    if cfg.sources == "same_person":
        flat_sample = torch.arange(batch, device=dev).repeat_interleave(num_kp)
        allowed &= flat_sample[None, :] == dst_sample[:, None]
    src_scores = src_scores.masked_fill(~allowed, 2.0)
    if dst_sample.numel() == 0:
        empty = dst_sample.new_zeros(0)
        return MixPlan(empty, empty, empty, empty, empty)
    best_score, src_flat = src_scores.min(dim=1)
    keep = best_score < 2.0
    dst_sample, dst_keypoint, src_flat = dst_sample[keep], dst_keypoint[keep], src_flat[keep]
    side = (cfg.patch_size * person_height.to(dev, torch.float64)[dst_sample]).round().clamp(min=1).long()
    return MixPlan(dst_sample, dst_keypoint, src_flat // num_kp, src_flat % num_kp, side)


def apply_mixes(images: torch.Tensor, keypoints: torch.Tensor, plan: MixPlan) -> torch.Tensor:
    """Copy each planned source patch over its destination patch (reading from the unmixed images)."""
    batch, channels, height, width = images.shape
    if plan.dst_sample.numel() == 0:
        return images.clone()
    dev = images.device
    plan = MixPlan(*(t.to(dev) for t in plan))
    centres = keypoints.to(dev, torch.float64).round().long()  # [B,K,2] (x, y)
    num_mix = plan.dst_sample.numel()
    largest = int(plan.side.max())
    offsets = torch.arange(largest, device=dev) - largest // 2  # [P]
    oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
    oy, ox = oy.reshape(1, -1), ox.reshape(1, -1)  # [1, P*P]
    low = -(plan.side // 2)[:, None]
    high = (plan.side - 1 - plan.side // 2)[:, None]
    inside_patch = (ox >= low) & (ox <= high) & (oy >= low) & (oy <= high)
    dst_xy = centres[plan.dst_sample, plan.dst_keypoint]  # [M,2]
    src_xy = centres[plan.src_sample, plan.src_keypoint]
    dx, dy = dst_xy[:, :1] + ox, dst_xy[:, 1:] + oy  # [M, P*P]
    sx, sy = src_xy[:, :1] + ox, src_xy[:, 1:] + oy
    in_image = (
        (dx >= 0) & (dx < width) & (dy >= 0) & (dy < height) & (sx >= 0) & (sx < width) & (sy >= 0) & (sy < height)
    )
    move = inside_patch & in_image
    mix_id = torch.arange(num_mix, device=dev)[:, None].expand_as(move)[move]
    dst_sample = plan.dst_sample[:, None].expand_as(move)[move]
    src_sample = plan.src_sample[:, None].expand_as(move)[move]
    dst_pixel = (dy * width + dx)[move]
    src_pixel = (sy * width + sx)[move]
    # overlapping destinations: the highest mix id writes, so the result does not depend on write order
    slots, slot_of = torch.unique(dst_sample * (height * width) + dst_pixel, return_inverse=True)
    winner = torch.full_like(slots, -1).scatter_reduce_(0, slot_of, mix_id, reduce="amax")
    wins = winner[slot_of] == mix_id
    source = images.contiguous().view(batch, channels, height * width)
    mixed = source.clone()
    mixed[dst_sample[wins], :, dst_pixel[wins]] = source[src_sample[wins], :, src_pixel[wins]]
    return mixed.view(batch, channels, height, width).contiguous(memory_format=_format_of(images))


def _format_of(images: torch.Tensor) -> torch.memory_format:
    return (
        torch.channels_last
        if images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
        else torch.contiguous_format
    )


def keypoint_mix(
    images: torch.Tensor,
    keypoints: torch.Tensor,
    valid: torch.Tensor,
    person_height: torch.Tensor,
    cfg: KeypointMixConfig,
    generator: torch.Generator,
    return_plan: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, MixPlan]:
    """Mixed copies of `images` [B,C,H,W]; `keypoints` [B,K,2] in input pixels, `valid` [B,K], `person_height` [B]."""
    if keypoints.shape[:2] != valid.shape or keypoints.shape[0] != images.shape[0]:
        raise ValueError(
            f"keypoint_mix: images {tuple(images.shape)}, keypoints {tuple(keypoints.shape)} and valid "
            f"{tuple(valid.shape)} disagree on batch or keypoint count"
        )
    plan = plan_mixes(valid, person_height, cfg, generator)
    mixed = apply_mixes(images, keypoints, plan)
    return (mixed, plan) if return_plan else mixed
