"""Pseudo-heatmaps carried from the easy view to the hard view, and their peaks."""

from __future__ import annotations

import json

import numpy as np
import torch

from components.config import load_config
from components.data import geometry
from components.data.datasets import UnlabeledPairDataset
from components.engine.pseudo_labels import heatmap_affine, warp_heatmaps
from components.heatmap_codec import heatmap_peaks
from components.keypoints import COCO_PERSON
from tests.tiny_coco import write_coco

STRIDE = 4
H, W = 32, 24  # heatmap of a 128x96 input


def gaussian(center_xy: np.ndarray, sigma: float = 1.5) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    return torch.exp(-((xs - center_xy[0]) ** 2 + (ys - center_xy[1]) ** 2) / (2 * sigma**2)).float()


def centroid(heatmap: torch.Tensor) -> np.ndarray:
    """Sub-pixel peak: weighted mean of the values above half the maximum."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    weight = torch.where(heatmap > heatmap.max() / 2, heatmap, torch.zeros_like(heatmap)).double()
    return np.array([(weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()])


def test_heatmap_affine_matches_the_geometry_module():
    matrix = geometry.compose_affine(
        geometry.crop_affine([50, 60], [80, 100], 20.0, (128, 96)),
        geometry.invert_affine(geometry.crop_affine([48, 64], [90, 110], -5.0, (128, 96))),
    )
    ours = heatmap_affine(torch.tensor(matrix[None]), STRIDE)[0, :2].numpy()
    np.testing.assert_allclose(ours, geometry.input_affine_to_heatmap(matrix, STRIDE), atol=1e-12)


def test_identity_leaves_heatmaps_unchanged():
    heatmaps = torch.rand(2, 17, H, W)
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(2, 2, 3)
    torch.testing.assert_close(
        warp_heatmaps(heatmaps, identity, torch.zeros(2, dtype=torch.bool), STRIDE, COCO_PERSON.flip_index), heatmaps
    )


def test_a_peak_at_p_in_the_easy_view_lands_at_A_p_in_the_hard_view():
    # a rotation + zoom + shift between the two crops, written in input pixels like the datasets do
    easy_crop = geometry.crop_affine([100, 120], [90, 120], 0.0, (128, 96))
    hard_crop = geometry.crop_affine([104, 116], [80, 106], 15.0, (128, 96))
    easy_to_hard = geometry.compose_affine(hard_crop, geometry.invert_affine(easy_crop))
    points_input = np.array([[40.0, 50.0], [55.0, 70.0]])
    heatmaps = torch.stack([gaussian(p) for p in geometry.input_to_heatmap(points_input, STRIDE)])[None]
    warped = warp_heatmaps(
        heatmaps, torch.tensor(easy_to_hard[None], dtype=torch.float32), torch.tensor([False]), STRIDE, [0, 1]
    )
    expected = geometry.input_to_heatmap(geometry.apply_affine(points_input, easy_to_hard), STRIDE)
    for k in range(2):
        np.testing.assert_allclose(centroid(warped[0, k]), expected[k], atol=0.2)
    coords, maxvals = heatmap_peaks(warped)
    assert np.all(np.abs(coords[0].numpy() - expected) <= 1.0) and torch.all(maxvals > 0.5)


def test_a_mirrored_hard_view_moves_the_peak_and_swaps_left_and_right_channels():
    left_shoulder, right_shoulder, nose = 5, 6, 0
    mirror = torch.tensor(geometry.hflip_affine(W * STRIDE)[None], dtype=torch.float32)
    heatmaps = torch.zeros(1, 17, H, W)
    heatmaps[0, left_shoulder] = gaussian(np.array([5.0, 10.0]))
    heatmaps[0, nose] = gaussian(np.array([8.0, 4.0]))
    warped = warp_heatmaps(heatmaps, mirror, torch.tensor([True]), STRIDE, COCO_PERSON.flip_index)
    assert COCO_PERSON.flip_index[left_shoulder] == right_shoulder
    assert warped[0, left_shoulder].max() < 1e-6
    np.testing.assert_allclose(centroid(warped[0, right_shoulder]), [W - 1 - 5.0, 10.0], atol=1e-3)
    np.testing.assert_allclose(centroid(warped[0, nose]), [W - 1 - 8.0, 4.0], atol=1e-3)
    unflipped = warp_heatmaps(heatmaps, mirror, torch.tensor([False]), STRIDE, COCO_PERSON.flip_index)
    assert unflipped[0, right_shoulder].max() < 1e-6 and unflipped[0, left_shoulder].max() > 0.9


def test_regions_outside_the_easy_view_are_zero():
    shift = torch.tensor([[[1.0, 0.0, 40.0], [0.0, 1.0, 0.0]]])  # 10 heatmap pixels to the right
    warped = warp_heatmaps(torch.ones(1, 17, H, W), shift, torch.tensor([False]), STRIDE, COCO_PERSON.flip_index)
    assert torch.all(warped[..., :9] == 0) and torch.all(warped[..., 11:] == 1)


def test_heatmap_peaks_returns_argmax_positions_and_values():
    generator = torch.Generator().manual_seed(3)
    heatmaps = torch.rand(3, 17, H, W, generator=generator) * 0.5
    xs = torch.randint(0, W, (3, 17), generator=generator)
    ys = torch.randint(0, H, (3, 17), generator=generator)
    values = 0.6 + torch.rand(3, 17, generator=generator) * 0.4
    heatmaps[torch.arange(3)[:, None], torch.arange(17)[None], ys, xs] = values
    coords, maxvals = heatmap_peaks(heatmaps)
    assert torch.equal(coords, torch.stack([xs, ys], dim=-1).float())
    assert torch.equal(maxvals, values)


def test_the_datasets_easy_to_hard_carries_easy_view_content_onto_the_hard_view(tmp_path):
    """End to end with the real UnlabeledPairDataset: warping the easy *image* (stride 1) reproduces
    the hard image where both see the scene, flips included; so heatmaps warp the same way."""
    coco = write_coco(tmp_path, num_images=6, seed=0, size=(96, 72))
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    cfg = load_config(
        None,
        [
            "input.image_size=[64,48]",
            "augment.color_jitter=0",
            "augment.noise_std=0",
            "augment.blur_prob=0",
            "augment.rotation_prob=1.0",
            "augment.half_body_prob=0",
        ],
    )
    dataset = UnlabeledPairDataset(tmp_path / "ann.json", tmp_path / "images", cfg, seed=0)
    items = [dataset[i] for i in range(len(dataset))]
    easy = torch.stack([item["easy"] for item in items])
    hard = torch.stack([item["hard"] for item in items])
    easy_to_hard = torch.stack([item["easy_to_hard"] for item in items])
    flipped = torch.stack([item["flipped"] for item in items])
    assert flipped.any() and not flipped.all()
    no_flip = torch.zeros_like(flipped)  # image channels are colours: move pixels, swap nothing
    seen = (warp_heatmaps(torch.ones(len(items), 1, 64, 48), easy_to_hard, no_flip, 1, [0]) > 0.999).float()
    carried = (warp_heatmaps(easy, easy_to_hard, no_flip, 1, [0, 1, 2]) - hard).abs().mean(1, keepdim=True)
    naive = (easy - hard).abs().mean(1, keepdim=True)

    def per_sample(error: torch.Tensor) -> torch.Tensor:
        return (error * seen).sum(dim=(1, 2, 3)) / seen.sum(dim=(1, 2, 3))

    assert torch.all(seen.mean(dim=(1, 2, 3)) > 0.3)
    assert torch.all(per_sample(carried) < 0.35 * per_sample(naive)), (per_sample(carried), per_sample(naive))
