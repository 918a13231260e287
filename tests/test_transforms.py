"""Crop views, the warp, photometric noise and tensor conversion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from components.data.geometry import apply_affine, box_to_center_scale, compose_affine, crop_affine, hflip_affine
from components.data.transforms import (
    View,
    base_view,
    denormalise,
    gaussian_noise,
    half_body_view,
    photometric,
    sample_view,
    to_tensor,
    warp,
)
from components.keypoints import COCO_PERSON

INPUT_SIZE = (256, 192)


def dot_image(point: tuple[float, float], shape: tuple[int, int] = (300, 400)) -> np.ndarray:
    """Black RGB image with a small bright Gaussian blob centred at a sub-pixel `point` (x, y)."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    blob = np.exp(-((xs - point[0]) ** 2 + (ys - point[1]) ** 2) / (2 * 2.0**2))
    return np.repeat(np.rint(blob * 255).astype(np.uint8)[..., None], 3, axis=2)


def centroid(image: np.ndarray) -> np.ndarray:
    weights = image[..., 0].astype(np.float64)
    weights = np.where(weights > 0.2 * weights.max(), weights, 0.0)
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()


def test_base_view_pads_the_box_to_the_input_aspect() -> None:
    view = base_view(np.array([10.0, 20.0, 30.0, 100.0]), aspect_ratio=0.75, padding=1.25)
    np.testing.assert_allclose(view.center, [25.0, 70.0])
    np.testing.assert_allclose(view.scale, [75.0 * 1.25, 125.0])
    assert view.rotation == 0.0 and not view.flip


def test_mirrored_view_flips_inside_the_crop() -> None:
    view = View(center=np.array([50.0, 60.0]), scale=np.array([90.0, 120.0]), rotation=20.0, flip=True)
    expected = compose_affine(hflip_affine(INPUT_SIZE[1]), crop_affine(view.center, view.scale, 20.0, INPUT_SIZE))
    np.testing.assert_allclose(view.affine(INPUT_SIZE), expected)


@pytest.mark.parametrize("rotation,flip", [(0.0, False), (30.0, False), (-25.0, True)])
def test_warp_puts_an_image_point_where_the_affine_says(rotation: float, flip: bool) -> None:
    point = (180.3, 140.7)
    view = View(center=np.array([170.0, 150.0]), scale=np.array([120.0, 160.0]), rotation=rotation, flip=flip)
    affine = view.affine(INPUT_SIZE)
    crop = warp(dot_image(point), affine, INPUT_SIZE)
    assert crop.shape == (*INPUT_SIZE, 3)
    np.testing.assert_allclose(centroid(crop), apply_affine(np.array(point), affine), atol=0.3)


def test_sample_view_stays_within_the_configured_ranges() -> None:
    rng = np.random.default_rng(1)
    view = View(center=np.array([0.0, 0.0]), scale=np.array([100.0, 200.0]))
    samples = [sample_view(view, rng, 0.25, 30.0, rotation_prob=0.5, flip_prob=0.5) for _ in range(400)]
    zooms = np.array([s.scale[0] / 100.0 for s in samples])
    angles = np.array([s.rotation for s in samples])
    flips = np.array([s.flip for s in samples])
    assert zooms.min() >= 0.75 and zooms.max() <= 1.25 and zooms.std() > 0.1
    assert np.abs(angles).max() <= 30.0
    assert 0.35 < np.mean(angles == 0.0) < 0.65
    assert 0.35 < flips.mean() < 0.65
    np.testing.assert_allclose([s.scale[1] / s.scale[0] for s in samples], 2.0)


def test_sample_view_without_augmentation_is_the_identity() -> None:
    view = View(center=np.array([5.0, 6.0]), scale=np.array([30.0, 40.0]))
    out = sample_view(view, np.random.default_rng(0), 0.0, 0.0, rotation_prob=1.0, flip_prob=0.0)
    np.testing.assert_allclose(out.scale, view.scale)
    assert out.rotation == 0.0 and not out.flip


def person_keypoints(labeled: list[int]) -> np.ndarray:
    rng = np.random.default_rng(3)
    keypoints = np.zeros((17, 3), dtype=np.float32)
    keypoints[:, 0] = rng.uniform(100, 200, 17)
    keypoints[:, 1] = np.linspace(50, 400, 17)
    keypoints[labeled, 2] = 2
    return keypoints


def test_half_body_needs_enough_labeled_keypoints() -> None:
    keypoints = person_keypoints(list(range(7)))
    assert half_body_view(keypoints, np.random.default_rng(0), 0.75, COCO_PERSON) is None


def test_half_body_view_covers_one_half_of_the_body() -> None:
    keypoints = person_keypoints(list(range(17)))
    halves = set()
    for seed in range(20):
        view = half_body_view(keypoints, np.random.default_rng(seed), 0.75, COCO_PERSON)
        assert view is not None
        np.testing.assert_allclose(view.scale[0] / view.scale[1], 0.75)
        for name, part in (("upper", COCO_PERSON.upper_body), ("lower", COCO_PERSON.lower_body)):
            points = keypoints[list(part), :2]
            center, scale = box_to_center_scale([*points.min(0), *(points.max(0) - points.min(0))], 0.75, 1.5)
            if np.allclose(view.center, center):
                halves.add(name)
                low, high = view.center - view.scale / 2, view.center + view.scale / 2
                assert np.all(points >= low) and np.all(points <= high)
    assert halves == {"upper", "lower"}


def test_photometric_is_seeded_bounded_and_identity_when_off() -> None:
    image = np.random.default_rng(0).random((32, 24, 3), dtype=np.float32)
    a = photometric(image.copy(), np.random.default_rng(5), 0.4, 0.05, blur_prob=0.5)
    b = photometric(image.copy(), np.random.default_rng(5), 0.4, 0.05, blur_prob=0.5)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    assert np.abs(a - image).mean() > 0.01
    same = photometric(image.copy(), np.random.default_rng(5), 0.0, 0.0, blur_prob=0.0)
    np.testing.assert_allclose(same, image, atol=1e-5)


def test_tensor_round_trip_uses_imagenet_normalisation() -> None:
    image = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    tensor = to_tensor(image)
    assert tuple(tensor.shape) == (3, 8, 6)
    assert tensor[0, 0, 0].item() == pytest.approx((image[0, 0, 0] / 255 - 0.485) / 0.229, rel=1e-5)
    np.testing.assert_array_equal(denormalise(tensor), image)


def test_opencv_is_single_threaded_once_transforms_are_imported() -> None:
    # a fork()ed DataLoader worker can deadlock inside OpenCV's thread pool; see transforms.py
    assert cv2.getNumThreads() == 1


def test_gaussian_noise_is_seeded_with_the_requested_spread_per_channel() -> None:
    a = gaussian_noise((128, 96, 3), 0.05, np.random.default_rng(1))
    np.testing.assert_array_equal(a, gaussian_noise((128, 96, 3), 0.05, np.random.default_rng(1)))
    assert not np.array_equal(a, gaussian_noise((128, 96, 3), 0.05, np.random.default_rng(2)))
    np.testing.assert_allclose(a.std(axis=(0, 1)), 0.05, rtol=0.03)
    np.testing.assert_allclose(a.mean(axis=(0, 1)), 0.0, atol=0.002)
    assert abs(np.corrcoef(a[..., 0].ravel(), a[..., 1].ravel())[0, 1]) < 0.03
