"""Gaussian heatmap targets: sub-pixel placement, visibility weights, agreement with the plain formula."""

from __future__ import annotations

import numpy as np
import pytest

from components.data.geometry import heatmap_to_input, input_to_heatmap
from components.heatmap_codec import gaussian_heatmaps

HEATMAP_SIZE = (64, 48)
STRIDE = 4


def refine_peaks(heatmaps: np.ndarray) -> np.ndarray:
    """Argmax plus a parabola fitted to the log-heatmap in x and y (exact for a Gaussian): [K, 2] heatmap px."""
    k, h, w = heatmaps.shape
    flat = heatmaps.reshape(k, -1).argmax(axis=1)
    ys, xs = np.divmod(flat, w)
    logs = np.log(np.maximum(heatmaps, 1e-12))
    coords = np.stack([xs, ys], axis=1).astype(np.float64)
    for axis, (pos, limit) in enumerate(((xs, w), (ys, h))):
        step = np.array([1, 0]) if axis == 0 else np.array([0, 1])
        ok = (pos > 0) & (pos < limit - 1)
        idx = np.nonzero(ok)[0]
        centre = logs[idx, ys[idx], xs[idx]]
        before = logs[idx, ys[idx] - step[1], xs[idx] - step[0]]
        after = logs[idx, ys[idx] + step[1], xs[idx] + step[0]]
        curvature = before - 2 * centre + after
        coords[idx, axis] += 0.5 * (before - after) / curvature
    return coords


def test_keypoint_round_trips_within_a_quarter_heatmap_pixel() -> None:
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(4, 187, 17), rng.uniform(4, 251, 17), np.full(17, 2.0)])
    heatmaps, weights = gaussian_heatmaps(points, HEATMAP_SIZE, STRIDE, sigma=2.0)
    assert heatmaps.shape == (17, *HEATMAP_SIZE) and heatmaps.dtype == np.float32
    assert np.all(weights == 1.0)
    decoded = refine_peaks(heatmaps)
    error = np.abs(decoded - input_to_heatmap(points[:, :2], STRIDE))
    assert error.max() < 0.25
    assert np.abs(heatmap_to_input(decoded, STRIDE) - points[:, :2]).max() < 0.25 * STRIDE


def test_matches_the_unseparated_gaussian_formula() -> None:
    points = np.array([[50.3, 77.9, 1.0], [10.0, 200.0, 2.0]])
    sigma = 3.0
    heatmaps, _ = gaussian_heatmaps(points, HEATMAP_SIZE, STRIDE, sigma=sigma)
    ys, xs = np.mgrid[0 : HEATMAP_SIZE[0], 0 : HEATMAP_SIZE[1]]
    for channel, (x, y) in enumerate(input_to_heatmap(points[:, :2], STRIDE)):
        expected = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
        np.testing.assert_allclose(heatmaps[channel], expected, atol=1e-6)


@pytest.mark.parametrize("sigma", [1.5, 2.0, 3.0])
def test_sigma_sets_the_width_in_heatmap_pixels(sigma: float) -> None:
    centre_input = heatmap_to_input(np.array([[20.0, 30.0]]), STRIDE)[0]
    heatmaps, _ = gaussian_heatmaps(np.array([[*centre_input, 2.0]]), HEATMAP_SIZE, STRIDE, sigma=sigma)
    assert heatmaps[0, 30, 20] == pytest.approx(1.0)
    assert heatmaps[0, 30, 22] == pytest.approx(np.exp(-2.0 / sigma**2), rel=1e-5)


def test_unlabeled_and_outside_keypoints_get_zero_weight_and_empty_maps() -> None:
    points = np.array(
        [
            [100.0, 100.0, 2.0],  # labeled, inside
            [100.0, 100.0, 0.0],  # unlabeled
            [-10.0, 100.0, 2.0],  # left of the crop
            [100.0, 300.0, 1.0],  # below the crop
            [191.0, 255.0, 1.0],  # last input pixel: still inside
            [192.5, 100.0, 2.0],  # just past the right edge
        ]
    )
    heatmaps, weights = gaussian_heatmaps(points, HEATMAP_SIZE, STRIDE, sigma=2.0)
    np.testing.assert_array_equal(weights, [1, 0, 0, 0, 1, 0])
    assert np.all(heatmaps[weights == 0] == 0)
    assert np.all(heatmaps[weights == 1].reshape(2, -1).max(axis=1) > 0.5)
