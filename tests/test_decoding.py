"""Heatmap decoding and flip handling against Gaussians placed at known sub-pixel positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from components.config import ExperimentConfig
from components.data.geometry import apply_affine, heatmap_to_input, hflip_affine, input_to_heatmap
from components.evaluation.inference import crops_to_image, decode_to_image, model_heatmaps
from components.heatmap_codec import decode_heatmaps, flip_heatmaps, gaussian_heatmaps
from components.keypoints import COCO_PERSON

HEATMAP_SIZE = (64, 48)
SIGMA = 2.0


def render(points_heatmap_px: np.ndarray, size: tuple[int, int] = HEATMAP_SIZE, sigma: float = SIGMA) -> np.ndarray:
    """[B,K,2] heatmap-pixel positions -> [B,K,h,w] Gaussians (stride 1, so input px = heatmap px)."""
    batch = []
    for person in points_heatmap_px:
        keypoints = np.concatenate([person, np.ones((len(person), 1))], axis=1)
        batch.append(gaussian_heatmaps(keypoints, size, stride=1, sigma=sigma)[0])
    return np.stack(batch)


@pytest.fixture
def subpixel_points() -> np.ndarray:
    rng = np.random.default_rng(7)
    low = np.array([4.0, 4.0])
    high = np.array([HEATMAP_SIZE[1] - 5.0, HEATMAP_SIZE[0] - 5.0])
    return rng.uniform(low, high, size=(6, COCO_PERSON.num_keypoints, 2))


def test_argmax_with_quarter_shift_is_within_a_quarter_pixel(subpixel_points: np.ndarray) -> None:
    coords, maxvals = decode_heatmaps(render(subpixel_points), "argmax")
    error = np.abs(coords - subpixel_points)
    assert error.max() <= 0.25 + 1e-6
    # the shift must actually act: plain rounding has errors up to 0.5 on these points
    assert np.abs(np.round(subpixel_points) - subpixel_points).max() > 0.3
    assert maxvals.shape == subpixel_points.shape[:2]
    assert np.all(maxvals > 0.8) and np.all(maxvals <= 1.0)


def test_dark_is_closer_than_argmax(subpixel_points: np.ndarray) -> None:
    heatmaps = render(subpixel_points)
    argmax_error = np.linalg.norm(decode_heatmaps(heatmaps, "argmax")[0] - subpixel_points, axis=-1)
    dark_error = np.linalg.norm(decode_heatmaps(heatmaps, "dark", blur_sigma=SIGMA)[0] - subpixel_points, axis=-1)
    assert dark_error.max() < 0.02
    assert dark_error.mean() < 0.2 * argmax_error.mean()


def test_dark_without_blur_is_exact_on_a_gaussian(subpixel_points: np.ndarray) -> None:
    coords, _ = decode_heatmaps(render(subpixel_points), "dark", blur_sigma=0.0)
    np.testing.assert_allclose(coords, subpixel_points, atol=1e-3)


def test_dark_smoothing_resists_noise(subpixel_points: np.ndarray) -> None:
    """Predicted heatmaps are noisy; the Gaussian smoothing is what keeps the Taylor step sound."""
    noise = np.random.default_rng(1).normal(0.0, 0.05, size=(*subpixel_points.shape[:2], *HEATMAP_SIZE))
    heatmaps = (render(subpixel_points) + noise).astype(np.float32)

    def mean_error(method: str, blur_sigma: float) -> float:
        coords = decode_heatmaps(heatmaps, method, blur_sigma=blur_sigma)[0]  # type: ignore[arg-type]
        return float(np.linalg.norm(coords - subpixel_points, axis=-1).mean())

    smoothed = mean_error("dark", SIGMA)
    assert smoothed < 0.5 * mean_error("dark", 0.0)
    assert smoothed < 0.5 * mean_error("argmax", SIGMA)


def test_torch_in_torch_out_and_numpy_in_numpy_out(subpixel_points: np.ndarray) -> None:
    heatmaps = render(subpixel_points)
    coords_np, _ = decode_heatmaps(heatmaps, "dark")
    coords_t, maxvals_t = decode_heatmaps(torch.from_numpy(heatmaps), "dark")
    assert isinstance(coords_np, np.ndarray) and isinstance(coords_t, torch.Tensor)
    assert isinstance(maxvals_t, torch.Tensor)
    np.testing.assert_allclose(coords_t.numpy(), coords_np)


def test_border_and_empty_maps_stay_finite_and_in_the_map() -> None:
    heatmaps = np.zeros((1, 3, *HEATMAP_SIZE), dtype=np.float32)
    heatmaps[0, 0] = render(np.array([[[-0.3, 10.0]]]))[0, 0]  # peak just outside the left edge
    heatmaps[0, 1] = render(np.array([[[47.0, 63.0]]]))[0, 0]  # bottom-right corner pixel
    for method in ("argmax", "dark"):
        coords, maxvals = decode_heatmaps(heatmaps, method)
        assert np.all(np.isfinite(coords))
        assert np.all(coords[..., 0] >= -1.0) and np.all(coords[..., 0] <= HEATMAP_SIZE[1])
        np.testing.assert_allclose(coords[0, 1], [47.0, 63.0], atol=0.3)
        assert maxvals[0, 2] == 0.0


def test_unknown_method_and_bad_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown decoding method"):
        decode_heatmaps(np.zeros((1, 1, 4, 4), np.float32), "soft-argmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[B,K,h,w\]"):
        decode_heatmaps(np.zeros((4, 4), np.float32))


def test_flip_heatmaps_needs_no_pixel_shift_under_the_pixel_centre_convention() -> None:
    """Heatmaps of a mirrored crop, flipped back, equal those of the unmirrored crop exactly."""
    stride, input_width = 4, HEATMAP_SIZE[1] * 4
    rng = np.random.default_rng(3)
    points = rng.uniform([10, 10], [input_width - 10, HEATMAP_SIZE[0] * 4 - 10], size=(COCO_PERSON.num_keypoints, 2))
    keypoints = np.concatenate([points, np.ones((COCO_PERSON.num_keypoints, 1))], axis=1)
    mirrored = keypoints.copy()
    mirrored[:, :2] = apply_affine(points, hflip_affine(input_width))
    mirrored = mirrored[COCO_PERSON.flip_index]  # a mirrored left wrist is where the right wrist is drawn
    plain = gaussian_heatmaps(keypoints, HEATMAP_SIZE, stride, SIGMA)[0]
    of_mirror = gaussian_heatmaps(mirrored, HEATMAP_SIZE, stride, SIGMA)[0]
    restored = flip_heatmaps(torch.from_numpy(of_mirror)[None], COCO_PERSON.flip_index)[0].numpy()
    np.testing.assert_allclose(restored, plain, atol=1e-6)


def test_flip_test_on_a_symmetric_model_returns_the_plain_coordinates() -> None:
    """A mirror-consistent model gives the same answer with and without the flip test (no 1 px drift).

    The stand-in model pools a marker image (one channel a keypoint) down to heatmap resolution;
    with left and right markers drawn identically it is exactly mirror-consistent, so any shift
    in the flip handling would show up as a coordinate offset.
    """
    stride = 4
    height, width = HEATMAP_SIZE[0] * stride, HEATMAP_SIZE[1] * stride
    rng = np.random.default_rng(11)
    points = rng.uniform([20, 20], [width - 20, height - 20], size=(1, COCO_PERSON.num_keypoints, 2))
    for left, right in COCO_PERSON.flip_pairs:  # left and right markers coincide: mirror-symmetric channels
        points[0, right] = points[0, left]
    markers = torch.from_numpy(render(points, (height, width), sigma=SIGMA * stride))

    def pooling_model(images: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(images, stride)

    plain = model_heatmaps(pooling_model, markers)  # type: ignore[arg-type]
    flipped = model_heatmaps(pooling_model, markers, COCO_PERSON.flip_index)  # type: ignore[arg-type]
    plain_coords, _ = decode_heatmaps(plain, "dark", blur_sigma=0.0)
    flip_coords, _ = decode_heatmaps(flipped, "dark", blur_sigma=0.0)
    torch.testing.assert_close(flip_coords, plain_coords, atol=1e-3, rtol=0)
    expected = input_to_heatmap(points[0], stride)
    np.testing.assert_allclose(plain_coords[0].numpy(), expected, atol=0.05)


def test_flipped_heatmaps_decode_to_mirrored_swapped_coordinates(subpixel_points: np.ndarray) -> None:
    heatmaps = torch.from_numpy(render(subpixel_points))
    coords, _ = decode_heatmaps(heatmaps, "dark", blur_sigma=0.0)
    flipped_coords, _ = decode_heatmaps(flip_heatmaps(heatmaps, COCO_PERSON.flip_index), "dark", blur_sigma=0.0)
    expected = coords[:, COCO_PERSON.flip_index].clone()
    expected[..., 0] = HEATMAP_SIZE[1] - 1 - expected[..., 0]
    torch.testing.assert_close(flipped_coords, expected, atol=1e-3, rtol=0)


def test_flip_test_refuses_widths_that_do_not_line_up() -> None:
    with pytest.raises(ValueError, match="multiple of the heatmap width"):

        def cropping_model(x: torch.Tensor) -> torch.Tensor:
            return x[:, :, ::4, ::4][..., :-1]

        model_heatmaps(cropping_model, torch.zeros(1, 17, 16, 18), COCO_PERSON.flip_index)  # type: ignore[arg-type]


def test_decoded_coordinates_back_project_to_image_pixels() -> None:
    cfg = ExperimentConfig()
    centers = np.array([[300.0, 200.0], [50.0, 80.0]])
    scales = np.array([[150.0, 200.0], [30.0, 40.0]])
    rng = np.random.default_rng(5)
    image_points = centers[:, None] + rng.uniform(-0.4, 0.4, size=(2, COCO_PERSON.num_keypoints, 2)) * scales[:, None]
    from components.data.geometry import crop_affine

    crop_points = np.stack(
        [
            apply_affine(p, crop_affine(c, s, 0.0, cfg.input.image_size))
            for p, c, s in zip(image_points, centers, scales)
        ]
    )
    np.testing.assert_allclose(
        crops_to_image(crop_points, centers, scales, cfg.input.image_size), image_points, atol=1e-9
    )
    heatmaps = render(input_to_heatmap(crop_points, cfg.input.heatmap_stride), cfg.input.heatmap_size, cfg.input.sigma)
    cfg.eval.decoder = "dark"
    decoded, _ = decode_to_image(torch.from_numpy(heatmaps), centers, scales, cfg)
    pixels_per_heatmap_px = scales[:, None, :] / np.array(cfg.input.heatmap_size[::-1])
    assert np.all(np.abs(decoded - image_points) <= 0.05 * pixels_per_heatmap_px)
    assert np.allclose(heatmap_to_input(input_to_heatmap(crop_points, 4), 4), crop_points)
