"""Hard views: the recipe grammar, targets that follow the geometry exactly, paths that get their own ops."""

from __future__ import annotations

import math

import pytest
import torch

from components.config import AugmentConfig, ConfigError, HardOpsConfig, load_config
from components.engine.hard_views import HardViews, PathGeometry, carry, compose, path_affines
from components.engine.pseudo_labels import warp_heatmaps
from components.hard_recipe import parse_recipe, path_recipes
from components.heatmap_codec import decode_heatmaps, gaussian_targets

H, W, STRIDE = 64, 48, 2
K = 5  # any keypoint count: nothing here knows COCO's
FLIP = list(range(K))  # a set without sides: a mirror leaves the channels in place


def test_recipes_parse_to_op_sequences_and_cycle_over_the_paths() -> None:
    assert parse_recipe("standard") == ()
    assert parse_recipe("joco") == ("jo", "co") and parse_recipe("jccm") == ("jc", "cm")
    assert parse_recipe("af+mu+ra+ta+yo") == ("af", "mu", "ra", "ta", "yo")
    assert parse_recipe("af+jccm") == ("af", "jc", "cm") and parse_recipe(" jo + co ") == ("jo", "co")
    assert path_recipes(("joco", "jccm"), 3) == [("jo", "co"), ("jc", "cm"), ("jo", "co")]
    with pytest.raises(ValueError, match="unknown ops"):
        parse_recipe("jc+cutout")
    with pytest.raises(ValueError, match="must come first"):
        parse_recipe("jc+af")
    with pytest.raises(ValueError, match="empty op"):
        parse_recipe("jc+")


def test_the_config_takes_one_recipe_or_a_list_and_refuses_a_typo() -> None:
    defaults = load_config(None)
    assert defaults.augment.hard_recipe == ("standard",) and defaults.train.consistency.hard_views == 1
    assert load_config(None, ["augment.hard_recipe=joco"]).augment.hard_recipe == ("joco",)
    assert load_config(None, ["augment.hard_recipe=[joco, jccm]"]).augment.hard_recipe == ("joco", "jccm")
    with pytest.raises(ConfigError, match=r"augment.hard_recipe.*unknown ops \['jx'\]"):
        load_config(None, ["augment.hard_recipe=jc+jx"])
    with pytest.raises(ConfigError, match="hard_views"):
        load_config(None, ["train.consistency.hard_views=0"])


def test_the_default_recipe_draws_nothing_and_hands_the_crop_through() -> None:
    views = HardViews(AugmentConfig())
    hard = torch.randn(3, 3, H, W)
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    assert views.paths == 1 and not views.draws and views.geometry(3, (H, W), generator) is None
    assert views.warp(hard, None) is hard
    assert views.apply(hard, torch.zeros(3, K, 2), torch.ones(3, K, dtype=torch.bool), None) is hard
    assert torch.equal(generator.get_state(), before)


def _blobs(points: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """One channel per keypoint [B, K, H, W], a Gaussian blob at its (x, y) input pixel."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    dx = xs - points[..., 0, None, None]
    dy = ys - points[..., 1, None, None]
    return torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))


def _centroids(images: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centre [B, K, 2] of each channel's blob, after cutting its faint tail."""
    weights = torch.where(images > 0.2 * images.amax(dim=(2, 3), keepdim=True), images, 0.0)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=weights.dtype), torch.arange(W, dtype=weights.dtype), indexing="ij")
    total = weights.sum(dim=(2, 3))
    return torch.stack([(weights * xs).sum(dim=(2, 3)) / total, (weights * ys).sum(dim=(2, 3)) / total], dim=-1)


def test_the_af_op_moves_the_targets_onto_the_moved_pixels() -> None:
    """Blobs at known keypoints of the easy view; their targets, carried through easy -> hard -> path,
    peak where the path's pixels put the blobs."""
    generator = torch.Generator().manual_seed(1)
    batch = 6
    easy_points = torch.rand(batch, K, 2, generator=generator, dtype=torch.float64) * 16 + torch.tensor([16.0, 24.0])
    shift = torch.tensor([[1.0, 0.0, 2.5], [0.0, 1.0, -3.0]], dtype=torch.float64)
    zoom = torch.tensor([[1.1, 0.0, -2.0], [0.0, 1.1, -3.0]], dtype=torch.float64)
    easy_to_hard = torch.stack([shift, zoom] * 3).float()
    hard_points = easy_points @ easy_to_hard.double()[:, :, :2].transpose(1, 2) + easy_to_hard.double()[:, None, :, 2]
    hard_images = _blobs(hard_points).float()  # the crop as the data path would hand it over
    labels = torch.cat([easy_points, torch.ones(batch, K, 1, dtype=torch.float64)], -1)
    easy_maps, _ = gaussian_targets(labels, (H // STRIDE, W // STRIDE), STRIDE, 1.5)
    views = HardViews(AugmentConfig(hard_recipe=("af", "standard")), paths=2)
    geometry = views.geometry(batch, (H, W), generator)
    assert geometry is not None and geometry.affines[0] is not None and geometry.affines[1] is None
    targets = carry(easy_maps, easy_to_hard, torch.zeros(batch, dtype=torch.bool), STRIDE, FLIP, geometry)
    moved = views.warp(hard_images, geometry)
    assert targets.shape == (2 * batch, K, H // STRIDE, W // STRIDE) and moved.shape == (2 * batch, K, H, W)
    peaks, _ = decode_heatmaps(targets, "dark")
    peaks_px = (peaks + 0.5) * STRIDE - 0.5
    error = (peaks_px - _centroids(moved.double())).norm(dim=-1)
    assert float(error.max()) < 0.5, error  # within half an input pixel, at stride 2
    path = geometry.affines[0]
    assert path is not None
    expected = hard_points @ path[:, :, :2].transpose(1, 2) + path[:, None, :, 2]
    assert float((peaks_px[:batch] - expected).norm(dim=-1).max()) < 0.5
    assert float((expected - hard_points).norm(dim=-1).max()) > 3, "the af path really moved the keypoints"
    # the path without geometry keeps the hard crop and its targets exactly
    assert torch.equal(moved[batch:], hard_images)
    assert torch.equal(
        targets[batch:], warp_heatmaps(easy_maps, easy_to_hard, torch.zeros(batch, dtype=torch.bool), STRIDE, FLIP)
    )
    # one warp by the composed map, not two in a row
    assert torch.equal(
        targets[:batch],
        warp_heatmaps(easy_maps, compose(path, easy_to_hard), torch.zeros(batch, dtype=torch.bool), STRIDE, FLIP),
    )


def test_af_draws_follow_multiaugs_affine_law() -> None:
    cfg = HardOpsConfig()
    affines = path_affines(40_000, (H, W), cfg, torch.Generator().manual_seed(2))
    linear = affines[:, :, :2]
    zoom = torch.linalg.det(linear).sqrt()
    angle = torch.rad2deg(torch.atan2(linear[:, 0, 1], linear[:, 0, 0]))
    centre = torch.tensor([(W - 1) / 2, (H - 1) / 2], dtype=torch.float64)
    torch.testing.assert_close(affines @ torch.cat([centre, centre.new_ones(1)]), centre.expand(40_000, 2))
    assert zoom.min() >= 0.75 - 1e-9 and zoom.max() <= 1.25 + 1e-9
    assert abs(float(zoom.mean()) - 1.0) < 0.005
    clipped_share = float(((zoom - 1).abs() > 0.25 - 1e-9).double().mean())  # P(|N(0, 1)| > 1) = 0.317
    assert abs(clipped_share - 0.317) < 0.015
    assert float((angle == 0).double().mean()) == pytest.approx(0.2, abs=0.01)  # rotation_prob 0.8
    rotated = angle[angle != 0]
    assert rotated.abs().max() <= 60 + 1e-9 and abs(float(rotated.mean())) < 0.6
    assert float((rotated.abs() > 60 - 1e-6).double().mean()) == pytest.approx(0.0455, abs=0.006)  # P(|z| > 2)


def test_each_path_takes_its_own_recipe_and_pairs_within_itself() -> None:
    batch = 8
    views = HardViews(AugmentConfig(hard_recipe=("cm", "standard", "co")), paths=3)
    crop = torch.arange(3 * batch, dtype=torch.float32).view(-1, 1, 1, 1) + 1  # every crop its own colour
    images = crop.expand(3 * batch, 3, H, W).contiguous()
    keypoints = torch.full((3 * batch, K, 2), 20.0)
    valid = torch.ones(3 * batch, K, dtype=torch.bool)
    out = views.apply(images, keypoints, valid, torch.Generator().manual_seed(3))
    first, second, third = out[:batch], out[batch : 2 * batch], out[2 * batch :]
    assert torch.equal(second, images[batch : 2 * batch]), "standard: no op"
    assert set(third.unique().tolist()) == {0.0, *crop[2 * batch :].flatten().tolist()}, "cutout fills 0"
    assert set(first.unique().tolist()) == set(crop[:batch].flatten().tolist()), "CutMix pairs within the path"
    assert not torch.equal(first, images[:batch])


@pytest.mark.parametrize("op", ["jc", "jo", "co", "cm", "mu", "ra", "ta", "yo"])
def test_every_op_repeats_with_its_seed_and_changes_pixels_only(op: str) -> None:
    views = HardViews(AugmentConfig(hard_recipe=(op,)))
    generator = torch.Generator().manual_seed(4)
    images = torch.randn(6, 3, H, W, generator=generator).clamp(-2, 2)
    keypoints = torch.rand(6, K, 2, generator=generator) * torch.tensor([W - 1.0, H - 1.0])
    valid = torch.rand(6, K, generator=generator) > 0.2
    runs = [views.apply(images, keypoints, valid, torch.Generator().manual_seed(s)) for s in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert runs[0].shape == images.shape and not torch.equal(runs[0], images)


def test_yoco_recolours_one_half_across_or_along() -> None:
    views = HardViews(AugmentConfig(hard_recipe=("yo",)))
    batch = 400
    images = torch.randn(batch, 3, H, W, generator=torch.Generator().manual_seed(7)).clamp(-1.5, 1.5)
    out = views.yoco(images, torch.Generator().manual_seed(8))
    changed = (out - images).abs().amax(dim=1) > 1e-5
    top, bottom = changed[:, : H // 2].any(dim=(1, 2)), changed[:, H // 2 :].any(dim=(1, 2))
    left, right = changed[:, :, : W // 2].any(dim=(1, 2)), changed[:, :, W // 2 :].any(dim=(1, 2))
    across = bottom & ~top
    along = right & ~left
    assert torch.all(across ^ along | ~changed.any(dim=(1, 2))), "exactly one half, the bottom or the right one"
    share = float(across.double().sum() / (across | along).double().sum())
    assert abs(share - 0.5) < 5 * math.sqrt(0.25 / batch)


def test_two_paths_without_geometry_share_one_target_warp() -> None:
    maps = torch.rand(4, K, H // STRIDE, W // STRIDE)
    easy_to_hard = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 2.0]]).expand(4, 2, 3)
    flipped = torch.zeros(4, dtype=torch.bool)
    single = carry(maps, easy_to_hard, flipped, STRIDE, FLIP)
    double = carry(maps, easy_to_hard, flipped, STRIDE, FLIP, PathGeometry((None, None)))
    assert torch.equal(double, torch.cat([single, single]))


def test_the_views_do_not_depend_on_how_the_data_path_lays_out_the_crops() -> None:
    """The GPU data path hands over channels-last crops, the CPU one contiguous: the same draws make the same views."""
    views = HardViews(AugmentConfig(hard_recipe=("af+jo+co", "jc+cm+mu", "ra+ta+yo")), paths=3)
    generator = torch.Generator().manual_seed(9)
    hard = torch.randn(4, 3, H, W, generator=generator).clamp(-2, 2)
    keypoints = torch.rand(12, K, 2, generator=generator) * torch.tensor([W - 1.0, H - 1.0])
    valid = torch.rand(12, K, generator=generator) > 0.2
    made = []
    for crops in (hard, hard.contiguous(memory_format=torch.channels_last)):
        draws = torch.Generator().manual_seed(10)
        geometry = views.geometry(4, (H, W), draws)
        made.append(views.apply(views.warp(crops, geometry), keypoints, valid, draws))
    torch.testing.assert_close(made[0], made[1], rtol=0, atol=1e-6)
    assert made[0].shape == (12, 3, H, W)
