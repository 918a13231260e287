"""Box ops on hard views: exactly the planned pixels change, from the planned source, and the plans follow their law."""

from __future__ import annotations

import math

import torch

from components.config import HardOpsConfig
from components.engine.occlusions import (
    Boxes,
    cutmix_boxes,
    cutout_boxes,
    joint_cutmix_boxes,
    joint_cutout_boxes,
    mixup,
    mixup_weights,
    partners,
    paste,
    pick_joints,
)

H, W = 64, 48
CFG = HardOpsConfig()


def coded(batch: int, height: int = H, width: int = W) -> torch.Tensor:
    """Images whose every pixel names itself: channel 0 the crop, 1 the row, 2 the column."""
    crop = torch.arange(batch, dtype=torch.float64).view(batch, 1, 1).expand(batch, height, width)
    rows = torch.arange(height, dtype=torch.float64).view(1, height, 1).expand(batch, height, width)
    cols = torch.arange(width, dtype=torch.float64).view(1, 1, width).expand(batch, height, width)
    return torch.stack([crop + 1, rows + 1, cols + 1], dim=1)  # +1: a filled pixel (0) is never a real one


def boxes(*rows: tuple[int, int, int, int, int, int, int]) -> Boxes:
    """One crop's boxes (x0, y0, x1, y1, source, dx, dy)."""
    columns = torch.tensor(rows).T
    return Boxes(*(c[None, :] for c in columns))


def test_paste_fills_copies_and_lets_the_later_box_win() -> None:
    images = coded(2, 10, 10)
    plan = Boxes(
        *(
            torch.cat([a, b])
            for a, b in zip(
                boxes((1, 1, 4, 4, -1, 0, 0), (3, 3, 6, 6, 1, 2, 1)),  # a fill, then a copy that overlaps it
                boxes((8, 8, 12, 12, 0, -8, -8), (0, 0, 0, 5, -1, 0, 0)),  # cut by the border; an empty box
            )
        )
    )
    out = paste(images, plan)
    assert torch.all(out[0, :, 1:3, 1:4] == 0) and torch.all(out[0, :, 3, 1:3] == 0)
    # crop 0's second box reads crop 1 two columns right and one row down
    assert torch.equal(out[0, :, 3:6, 3:6], images[1, :, 4:7, 5:8])
    # crop 1's box is cut to [8, 10)^2 and reads crop 0 from the top-left corner
    assert torch.equal(out[1, :, 8:, 8:], images[0, :, :2, :2])
    changed = (out != images).any(dim=1)
    expected = torch.zeros(2, 10, 10, dtype=torch.bool)
    expected[0, 1:6, 1:6] = True
    expected[0, 1:3, 4:6] = False
    expected[0, 4:6, 1:3] = False
    expected[1, 8:, 8:] = True
    assert torch.equal(changed, expected)


def test_paste_gives_zero_where_the_source_is_outside_and_keeps_channels_last() -> None:
    images = coded(1, 8, 8).contiguous(memory_format=torch.channels_last)
    out = paste(images, boxes((0, 0, 4, 4, 0, -2, 0)))
    assert torch.all(out[0, :, :4, :2] == 0) and torch.equal(out[0, :, :4, 2:4], images[0, :, :4, :2])
    assert out.is_contiguous(memory_format=torch.channels_last)


def _box_stats(plan: Boxes) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres and half sides of unclipped boxes."""
    centre = torch.stack([(plan.x0 + plan.x1) / 2.0, (plan.y0 + plan.y1) / 2.0], dim=-1)
    half = torch.stack([(plan.x1 - plan.x0) / 2.0, (plan.y1 - plan.y0) / 2.0], dim=-1)
    return centre, half


def _assert_uniform(values: torch.Tensor, low: float, high: float, what: str) -> None:
    values = values.double().flatten()
    mean, std = (low + high) / 2, (high - low) / math.sqrt(12)
    assert values.min() >= low and values.max() <= high, what
    assert abs(float(values.mean()) - mean) < 5 * std / math.sqrt(values.numel()), what
    assert abs(float(values.std()) - std) < 0.05 * std, what


def _assert_integer_uniform(values: torch.Tensor, low: float, high: float, what: str) -> None:
    """floor(uniform[low, high)) with integer bounds: every integer of [low, high) equally often."""
    counts = torch.bincount(values.long().flatten() - int(low))
    assert values.min() >= low and values.max() < high and counts.numel() == int(high - low), what
    expected = values.numel() / counts.numel()
    assert torch.all((counts - expected).abs() < 5 * math.sqrt(expected)), (what, counts)


def test_cutout_boxes_lie_anywhere_with_multiaugs_sizes_and_fill() -> None:
    size = (4000, 3000)
    small_boxes = HardOpsConfig(box_half_size=(0.001, 0.002))  # 4-8 px: hardly any box touches the border
    plan = cutout_boxes(2000, size, small_boxes, torch.Generator().manual_seed(0))
    assert plan.x0.shape == (2000, CFG.cutout_holes) and torch.all(plan.source == -1)
    inner = (plan.x0 > 0) & (plan.x1 < size[1]) & (plan.y0 > 0) & (plan.y1 < size[0])
    assert float(inner.double().mean()) > 0.99
    centre, half = _box_stats(Boxes(*(t[inner][None] for t in plan)))
    _assert_uniform(centre[..., 0], 0, size[1], "centre x")
    _assert_uniform(centre[..., 1], 0, size[0], "centre y")
    _assert_integer_uniform(half, 4, 8, "half side")
    # at MultiAugs' 256x192 input the half sides are its torch.randint(10, 20) pixels
    plan = cutout_boxes(2000, (256, 192), CFG, torch.Generator().manual_seed(1))
    inside = (plan.x0 > 0) & (plan.x1 < 192) & (plan.y0 > 0) & (plan.y1 < 256)
    sides = torch.stack([plan.x1 - plan.x0, plan.y1 - plan.y0], -1)[inside] // 2
    counts = torch.bincount(sides.flatten())[10:]
    assert counts.numel() == 10 and torch.all(
        (counts - counts.double().mean()).abs() < 5 * counts.double().mean() ** 0.5
    )


def test_cutout_changes_only_its_boxes_to_the_mean_colour() -> None:
    images = torch.randn(6, 3, H, W, generator=torch.Generator().manual_seed(2)) + 5.0
    plan = cutout_boxes(6, (H, W), CFG, torch.Generator().manual_seed(3))
    out = paste(images, plan)
    inside = torch.zeros(6, H, W, dtype=torch.bool)
    for b in range(6):
        for x0, y0, x1, y1 in zip(plan.x0[b], plan.y0[b], plan.x1[b], plan.y1[b]):
            inside[b, y0:y1, x0:x1] = True
    assert torch.all(out.permute(1, 0, 2, 3)[:, inside] == 0)
    assert torch.equal(out.permute(1, 0, 2, 3)[:, ~inside], images.permute(1, 0, 2, 3)[:, ~inside])


def test_cutmix_copies_the_same_place_from_a_partner_crop() -> None:
    images = coded(8)
    generator = torch.Generator().manual_seed(4)
    plan = cutmix_boxes(8, (H, W), CFG, generator)
    assert torch.equal(plan.source[:, 0].sort().values, torch.arange(8)), "the partners are a permutation"
    assert torch.all(plan.source == plan.source[:, :1]) and torch.all(plan.dx == 0) and torch.all(plan.dy == 0)
    out = paste(images, plan)
    changed = (out != images).any(dim=1)
    for b in range(8):
        rows, cols = torch.nonzero(changed[b], as_tuple=True)
        assert torch.all(out[b, 0, rows, cols] == plan.source[b, 0] + 1)
        assert torch.equal(out[b, 1:, rows, cols], images[b, 1:, rows, cols]), "same place"


def test_partners_are_uniform_permutations() -> None:
    generator = torch.Generator().manual_seed(5)
    draws = torch.stack([partners(4, generator) for _ in range(4000)])
    assert torch.all(draws.sort(dim=1).values == torch.arange(4))
    counts = torch.bincount(draws[:, 0], minlength=4).double()
    assert torch.all((counts - 1000).abs() < 5 * math.sqrt(1000 * 0.75))


def test_joints_are_drawn_with_replacement_uniformly_among_the_valid_ones() -> None:
    valid = torch.tensor([[True, False, True, True, False], [False] * 5, [False, False, False, False, True]])
    picked, has_any = pick_joints(valid.repeat(2000, 1), 5, torch.Generator().manual_seed(6))
    assert torch.equal(has_any, valid.any(1).repeat(2000))
    first = picked[0::3]
    assert torch.all(valid[0][first])
    counts = torch.bincount(first.flatten(), minlength=5).double()
    assert counts[1] == counts[4] == 0 and torch.all((counts[[0, 2, 3]] - 10_000 / 3).abs() < 5 * math.sqrt(10_000 / 3))
    assert torch.all(picked[2::3] == 4)
    assert any(len(set(row.tolist())) < 5 for row in first[:20]), "with replacement"


def _scene(batch: int, generator: torch.Generator, num_kp: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    keypoints = torch.rand(batch, num_kp, 2, generator=generator) * torch.tensor([W - 1.0, H - 1.0])
    valid = torch.rand(batch, num_kp, generator=generator) > 0.3
    valid[0] = False  # a person without one confident keypoint
    return keypoints, valid


def test_joint_cutout_centres_boxes_on_jittered_valid_keypoints() -> None:
    size = (5120, 4000)  # no box is cut by the border: centre and side are read back exactly
    keypoints = torch.tensor([[[1500.0, 1500.0], [300.0, 400.0], [2400.0, 3700.0]]]).repeat(3000, 1, 1)
    valid = torch.tensor([[True, False, True]]).repeat(3000, 1)
    valid[:1000, 2] = False
    plan = joint_cutout_boxes(keypoints, valid, size, CFG, torch.Generator().manual_seed(7))
    assert plan.x0.shape == (3000, CFG.joint_cutout_joints) and torch.all(plan.source == -1)
    centre, half = _box_stats(plan)
    near_first = (centre - keypoints[:, :1]).norm(dim=-1) < (centre - keypoints[:, 2:]).norm(dim=-1)
    assert torch.all(near_first[:1000]), "only valid keypoints are cut out"
    offsets = (centre - keypoints[:, :1])[near_first]
    sigma = CFG.joint_jitter * size[0]  # 200 px
    assert abs(float(offsets.mean())) < 5 * sigma / math.sqrt(offsets.numel())
    assert abs(float(offsets.std()) / sigma - 1.0) < 0.03
    _assert_integer_uniform(half, *(b * size[0] for b in CFG.box_half_size), "half side")
    share = near_first[1000:].double().mean()  # two valid keypoints, chosen alike
    assert abs(float(share) - 0.5) < 5 * math.sqrt(0.25 / near_first[1000:].numel())


def test_joint_cutout_leaves_people_without_confident_keypoints_alone() -> None:
    generator = torch.Generator().manual_seed(8)
    keypoints, valid = _scene(6, generator)
    images = torch.randn(6, 3, H, W, generator=generator)
    out = paste(images, joint_cutout_boxes(keypoints, valid, (H, W), CFG, generator))
    assert torch.equal(out[0], images[0]) and not torch.equal(out[1:], images[1:])


def test_joint_cut_occlude_pastes_a_box_of_another_crops_keypoint_over_ours() -> None:
    size = (2560, 1920)
    generator = torch.Generator().manual_seed(9)
    keypoints = (torch.rand(400, 7, 2, generator=generator) * 1000 + 500).round()
    valid = torch.rand(400, 7, generator=generator) > 0.5
    valid[:, 0] = True
    exact = HardOpsConfig(joint_jitter=0.0)  # no jitter: every centre is a keypoint
    plan = joint_cutmix_boxes(keypoints, valid, size, exact, generator)
    assert plan.x0.shape == (400, CFG.joint_cutmix_joints)
    centre, half = _box_stats(plan)
    source_centre = centre + torch.stack([plan.dx, plan.dy], -1)
    for where, crop in ((centre, torch.arange(400)[:, None]), (source_centre, plan.source)):
        on = (where[..., None, :] == keypoints[crop]).all(-1)  # [B, R, K]
        assert torch.all(on.any(-1)) and torch.all((on & ~valid[crop]).sum(-1) < on.sum(-1)), "on a valid keypoint"
    _assert_integer_uniform(half, *(b * size[0] for b in CFG.box_half_size), "half side")
    counts = torch.bincount(plan.source[:, 0], minlength=400)
    assert counts.max() < 12 and torch.all(plan.source == plan.source[:, :1]), "one random source crop per crop"
    jittered = joint_cutmix_boxes(keypoints, valid, size, CFG, torch.Generator().manual_seed(9))
    assert not torch.equal(jittered.x0, plan.x0)
    # the pixels really come from there
    small = coded(5)
    keypoints, valid = _scene(5, torch.Generator().manual_seed(10))
    plan = joint_cutmix_boxes(keypoints, valid, (H, W), CFG, torch.Generator().manual_seed(11))
    out = paste(small, plan)
    assert torch.equal(out[0], small[0]), "no valid keypoint, no box"
    changed = (out != small).any(dim=1)
    for b in range(1, 5):
        rows, cols = torch.nonzero(changed[b], as_tuple=True)
        read = out[b, :, rows, cols]
        from_source = read[0] == plan.source[b, 0] + 1
        assert torch.all(from_source | (read == 0).all(0)), "a box pixel is its source's or 0 (source outside)"


def test_mixup_keeps_at_least_three_quarters_with_a_u_shaped_blend() -> None:
    keep = mixup_weights(50_000, CFG, torch.Generator().manual_seed(12))
    assert keep.min() >= 0.75 and keep.max() <= 1.0
    assert abs(float(keep.mean()) - 0.875) < 5 * float(keep.std()) / math.sqrt(keep.numel())  # Beta(a, a) has mean 1/2
    assert float((keep > 0.99).double().mean()) > 0.25 and float((keep < 0.76).double().mean()) > 0.25  # U-shaped
    images = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(13))
    out = mixup(images, CFG, torch.Generator().manual_seed(14))
    replay = torch.Generator().manual_seed(14)
    weights = mixup_weights(6, CFG, replay).float().view(6, 1, 1, 1)
    partner = partners(6, replay)
    torch.testing.assert_close(out, weights * images + (1 - weights) * images[partner])
