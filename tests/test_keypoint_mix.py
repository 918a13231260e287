"""Keypoint-Mix: patches really move from source keypoints to destination keypoints, nothing else changes."""

from __future__ import annotations

import torch

from components.config import KeypointMixConfig
from components.engine.keypoint_mix import keypoint_mix

B, K, H, W = 3, 17, 64, 48


def scene(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(B, 3, H, W, generator=generator)
    # keypoints on a coarse lattice so that patches of side 6 never overlap
    slots = torch.stack([torch.randperm(48, generator=generator)[:K] for _ in range(B)])
    keypoints = torch.stack([(slots % 6) * 8 + 4, (slots // 6) * 8 + 4], dim=-1).float()
    valid = torch.rand(B, K, generator=generator) > 0.3
    return images, keypoints, valid


def patch(images: torch.Tensor, sample: int, xy: torch.Tensor, side: int) -> torch.Tensor:
    x, y = int(round(float(xy[0]))), int(round(float(xy[1])))
    lo = side // 2
    return images[sample, :, y - lo : y - lo + side, x - lo : x - lo + side]


def test_destination_patches_become_the_source_patches_and_the_rest_is_untouched():
    images, keypoints, valid = scene()
    original, kp_before = images.clone(), keypoints.clone()
    cfg = KeypointMixConfig(prob=1.0, num_keypoints=3, patch_size=0.1)  # side round(0.1 * 60) = 6
    mixed, plan = keypoint_mix(
        images, keypoints, valid, torch.full((B,), 60.0), cfg, torch.Generator().manual_seed(1), return_plan=True
    )
    assert plan.dst_sample.numel() == 3 * B
    assert torch.all(plan.side == 6)
    touched = torch.zeros(B, H, W, dtype=torch.bool)
    for d, dk, s, sk in zip(*(t.tolist() for t in plan[:4])):
        assert valid[d, dk] and valid[s, sk] and dk != sk
        assert torch.equal(patch(mixed, d, keypoints[d, dk], 6), patch(original, s, keypoints[s, sk], 6))
        x, y = keypoints[d, dk].round().long().tolist()
        touched[d, y - 3 : y + 3, x - 3 : x + 3] = True
    assert torch.equal(mixed.permute(1, 0, 2, 3)[:, ~touched], original.permute(1, 0, 2, 3)[:, ~touched])
    assert torch.equal(images, original) and torch.equal(keypoints, kp_before)  # inputs (and targets) untouched


def test_invalid_keypoints_are_never_destinations_or_sources():
    images, keypoints, valid = scene(seed=2)
    valid[1] = False
    cfg = KeypointMixConfig(prob=1.0, num_keypoints=5, patch_size=0.1)
    _, plan = keypoint_mix(
        images, keypoints, valid, torch.full((B,), 60.0), cfg, torch.Generator().manual_seed(0), return_plan=True
    )
    assert not torch.any(plan.dst_sample == 1) and not torch.any(plan.src_sample == 1)
    assert torch.all(valid[plan.dst_sample, plan.dst_keypoint]) and torch.all(valid[plan.src_sample, plan.src_keypoint])


def test_probability_zero_changes_nothing_and_the_generator_decides_everything():
    images, keypoints, valid = scene()
    height = torch.full((B,), 60.0)
    off = keypoint_mix(images, keypoints, valid, height, KeypointMixConfig(prob=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(off, images)
    cfg = KeypointMixConfig(prob=0.7, num_keypoints=4, patch_size=0.3)  # large, overlapping patches
    runs = [
        keypoint_mix(images, keypoints, valid, height, cfg, torch.Generator().manual_seed(seed)) for seed in (5, 5, 6)
    ]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_patches_cut_by_the_border_move_only_their_inside_part():
    images = torch.arange(2 * 1 * 10 * 10, dtype=torch.float32).reshape(2, 1, 10, 10)
    keypoints = torch.tensor([[[0.0, 0.0], [5.0, 5.0]], [[9.0, 9.0], [5.0, 5.0]]])
    valid = torch.tensor([[True, False], [False, True]])
    cfg = KeypointMixConfig(prob=1.0, num_keypoints=1, patch_size=0.4)  # side 4
    mixed, plan = keypoint_mix(
        images, keypoints, valid, torch.full((2,), 10.0), cfg, torch.Generator().manual_seed(0), return_plan=True
    )
    # sample 0 keypoint 0 sits in the corner: its patch spans [-2, 1], only [0, 1]^2 is inside
    row = plan.dst_sample.tolist().index(0)
    assert (plan.src_sample[row].item(), plan.src_keypoint[row].item()) == (1, 1)
    assert torch.equal(mixed[0, 0, :2, :2], images[1, 0, 5:7, 5:7])
    assert torch.equal(mixed[0, 0, 2:, :], images[0, 0, 2:, :]) and torch.equal(mixed[0, 0, :, 2:], images[0, 0, :, 2:])


def test_same_person_sources_come_from_the_destination_person_only():
    images, keypoints, valid = scene(seed=3)
    height = torch.full((B,), 60.0)
    cfg = KeypointMixConfig(prob=1.0, num_keypoints=3, patch_size=0.1, sources="same_person")
    mixed, plan = keypoint_mix(
        images, keypoints, valid, height, cfg, torch.Generator().manual_seed(4), return_plan=True
    )
    assert plan.dst_sample.numel() == 3 * B
    assert torch.equal(plan.src_sample, plan.dst_sample) and torch.all(plan.src_keypoint != plan.dst_keypoint)
    for d, dk, sk in zip(plan.dst_sample.tolist(), plan.dst_keypoint.tolist(), plan.src_keypoint.tolist()):
        assert torch.equal(patch(mixed, d, keypoints[d, dk], 6), patch(images, d, keypoints[d, sk], 6))
    _, across = keypoint_mix(
        images,
        keypoints,
        valid,
        height,
        cfg.model_copy(update={"sources": "batch"}),
        torch.Generator().manual_seed(4),
        return_plan=True,
    )
    assert torch.any(across.src_sample != across.dst_sample)  # the default draws from other people too
