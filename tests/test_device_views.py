"""Device-side views: the batched tensor path gives the CPU loader path's outputs, on any device."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from components.data.device_views import (
    BLUR_SIGMA_RANGE,
    ViewBatch,
    apply_affines,
    apply_photometric_,
    blur_draws,
    blur_sigmas,
    crop_affines,
    gaussian_blur,
    photometric_,
    photometric_factors,
    warp_crops,
)
from components.data.geometry import apply_affine, invert_affine
from components.data.transforms import View, photometric, warp
from components.heatmap_codec import gaussian_heatmaps, gaussian_targets

SOURCE_SIZE = (48, 64)  # (h, w) of the test images
CROP_SIZE = (32, 24)  # (h, w): the 4:3 network input, small
HEATMAP_SIZE = (8, 6)
STRIDE = 4


def smooth_images(batch: int, seed: int) -> np.ndarray:
    """Low-frequency RGB uint8 images [B, h, w, 3]: bilinear interpolation is then well defined at
    cv2's 1/32-pixel coordinate quantisation, so the two warps can be compared tightly."""
    rng = np.random.default_rng(seed)
    h, w = SOURCE_SIZE
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    freq = rng.uniform(0.05, 0.2, size=(batch, 3, 2))
    phase = rng.uniform(0, 2 * np.pi, size=(batch, 3))
    waves = np.sin(freq[..., 0, None, None] * xs + freq[..., 1, None, None] * ys + phase[..., None, None])
    return np.rint(127.5 + 120 * waves).astype(np.uint8).transpose(0, 2, 3, 1)


def random_affines(batch: int, seed: int) -> np.ndarray:
    """Crops of random boxes with zoom, rotation and mirror, some running past the image edge."""
    rng = np.random.default_rng(seed)
    h, w = SOURCE_SIZE
    affines = []
    for _ in range(batch):
        view = View(
            center=rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h]),
            scale=rng.uniform(15, 70) * np.array([0.75, 1.0]),
            rotation=float(rng.uniform(-40, 40)),
            flip=bool(rng.random() < 0.5),
        )
        affines.append(view.affine(CROP_SIZE))
    return np.stack(affines)


def interior_mask(affine: np.ndarray, margin: float = 1.0) -> np.ndarray:
    """Crop pixels whose source lies at least `margin` px inside the image: there both warps read only image."""
    h, w = CROP_SIZE
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    src = apply_affine(np.stack([xs, ys], axis=-1), invert_affine(affine))
    return (
        (src[..., 0] >= margin)
        & (src[..., 0] <= SOURCE_SIZE[1] - 1 - margin)
        & (src[..., 1] >= margin)
        & (src[..., 1] <= SOURCE_SIZE[0] - 1 - margin)
    )


def test_warp_crops_matches_cv2_warp_affine() -> None:
    images, affines = smooth_images(6, seed=0), random_affines(6, seed=1)
    expected = np.stack([warp(image, affine, CROP_SIZE) for image, affine in zip(images, affines)]).astype(np.float32)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    crops = warp_crops(batch, torch.from_numpy(affines), CROP_SIZE)
    assert crops.shape == (6, 3, *CROP_SIZE) and crops.dtype == torch.float32
    got = crops.permute(0, 2, 3, 1).numpy()
    masks = np.stack([interior_mask(a) for a in affines])
    assert 0.5 < masks.mean() < 0.95  # most of the crops, and some of them past the image edge
    # cv2 rounds to uint8 (0.5) and quantises coordinates to 1/32 px: under a grey level on these images
    assert np.abs(got - expected)[masks].max() <= 1.0
    assert np.abs(got - expected)[masks].mean() < 0.3
    # the zero border blends the same way as cv2's constant border
    assert np.abs(got - expected).max() <= 1.0
    # far outside the image both give zeros
    outside = ~np.stack([interior_mask(a, margin=-1.0) for a in affines])
    assert np.all(got[outside] == 0) and np.all(expected[outside] == 0)


def test_warp_crops_identity_and_integer_input() -> None:
    images = torch.from_numpy(smooth_images(2, seed=3)).permute(0, 3, 1, 2).contiguous()
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(2, 2, 3)
    crops = warp_crops(images, identity, SOURCE_SIZE)  # uint8 in, float32 out
    assert crops.dtype == torch.float32
    torch.testing.assert_close(crops, images.float(), atol=1e-3, rtol=0)
    shifted = torch.tensor([[1.0, 0.0, -5.0], [0.0, 1.0, -2.0]]).expand(2, 2, 3)  # crop (0,0) = image (5,2)
    crops = warp_crops(images, shifted, (10, 10))
    torch.testing.assert_close(crops, images[:, :, 2:12, 5:15].float(), atol=1e-3, rtol=0)


def test_crop_affines_match_view_affine() -> None:
    rng = np.random.default_rng(15)
    views = [
        View(rng.uniform(10, 50, 2), rng.uniform(10, 60, 2), float(rng.uniform(-40, 40)), bool(rng.random() < 0.5))
        for _ in range(8)
    ]
    batch = ViewBatch(
        torch.tensor(np.stack([v.center for v in views])),
        torch.tensor(np.stack([v.scale for v in views])),
        torch.tensor([v.rotation for v in views], dtype=torch.float64),
        torch.tensor([v.flip for v in views]),
    )
    assert batch.flip.any() and not batch.flip.all()
    expected = np.stack([v.affine(CROP_SIZE) for v in views])
    np.testing.assert_allclose(crop_affines(batch, CROP_SIZE).numpy(), expected, rtol=0, atol=1e-12)


def test_apply_affines_matches_geometry() -> None:
    affines = random_affines(4, seed=2)
    points = np.random.default_rng(4).uniform(0, 60, size=(4, 17, 2))
    got = apply_affines(torch.from_numpy(points), torch.from_numpy(affines)).numpy()
    expected = np.stack([apply_affine(p, a) for p, a in zip(points, affines)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def random_keypoints(batch: int, seed: int) -> np.ndarray:
    """Keypoints [B, K, 3] spread over and past the crop, with unlabeled ones and edge cases."""
    rng = np.random.default_rng(seed)
    h, w = CROP_SIZE
    xy = rng.uniform([-6, -6], [w + 6, h + 6], size=(batch, 17, 2))
    visibility = rng.choice([0.0, 1.0, 2.0], size=(batch, 17, 1))
    points = np.concatenate([xy, visibility], axis=2)
    # exactly on the inside/outside limits: x = -0.5 is in, x = w - 0.5 is out
    points[0, :4] = [[-0.5, 5, 2], [w - 0.5, 5, 2], [5, -0.5, 2], [5, h - 0.5, 2]]
    return points


def test_gaussian_targets_match_gaussian_heatmaps() -> None:
    keypoints = random_keypoints(8, seed=5)
    heatmaps, weights = gaussian_targets(torch.from_numpy(keypoints), HEATMAP_SIZE, STRIDE, sigma=2.0)
    assert heatmaps.shape == (8, 17, *HEATMAP_SIZE) and heatmaps.dtype == torch.float32
    assert weights.shape == (8, 17) and weights.dtype == torch.float32
    for b in range(8):
        expected, expected_weights = gaussian_heatmaps(keypoints[b], HEATMAP_SIZE, STRIDE, sigma=2.0)
        np.testing.assert_array_equal(weights[b].numpy(), expected_weights)
        np.testing.assert_allclose(heatmaps[b].numpy(), expected, rtol=1e-6, atol=1e-7)
    assert weights[0, :4].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert 0 < weights.mean() < 1  # both kinds of keypoint occur


def test_gaussian_targets_accept_float32_keypoints() -> None:
    keypoints = random_keypoints(2, seed=6)
    heatmaps, _ = gaussian_targets(torch.from_numpy(keypoints).float(), HEATMAP_SIZE, STRIDE, sigma=1.5)
    expected, _ = gaussian_heatmaps(keypoints[1].astype(np.float32), HEATMAP_SIZE, STRIDE, sigma=1.5)
    np.testing.assert_allclose(heatmaps[1].numpy(), expected, rtol=1e-5, atol=1e-6)


def crop_batch(batch: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(smooth_images(batch, seed)).permute(0, 3, 1, 2).float() / 255.0


def test_photometric_is_deterministic_and_keeps_shape_and_dtype() -> None:
    images = crop_batch(3, seed=7)
    outs = [photometric_(images.clone(), torch.Generator().manual_seed(11), 0.4, 0.05) for _ in range(2)]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert outs[0].shape == images.shape and outs[0].dtype == images.dtype
    assert outs[0].min() >= 0 and outs[0].max() <= 1
    other = photometric_(images.clone(), torch.Generator().manual_seed(12), 0.4, 0.05)
    assert not torch.equal(other, outs[0])
    # in place: the argument is the result
    target = images.clone()
    assert photometric_(target, torch.Generator().manual_seed(11), 0.4, 0.05) is target
    # without jitter and noise it changes nothing
    torch.testing.assert_close(photometric_(images.clone(), torch.Generator(), 0.0, 0.0), images)


def test_photometric_matches_the_numpy_path_for_the_same_factors() -> None:
    images = crop_batch(2, seed=8)
    factors = torch.tensor([[1.2, 0.8, 1.3], [0.7, 1.25, 0.6]])
    got = apply_photometric_(images.clone(), factors)
    for b in range(2):
        image = images[b].permute(1, 2, 0).numpy().copy()

        class Fixed:  # feeds `transforms.photometric` the chosen factors, no blur, no noise
            def random(self, n: int | None = None, b: int = b) -> np.ndarray | float:
                return (factors[b].numpy().astype(np.float64) - 1.0 + 0.5) if n == 3 else 1.0

            def uniform(self, low: float, high: float) -> float:
                return low

        expected = photometric(image, Fixed(), jitter=0.5, noise_std=0.0)  # type: ignore[arg-type]
        np.testing.assert_allclose(got[b].permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-5)


def test_gaussian_blur_matches_cv2() -> None:
    images = crop_batch(5, seed=13)
    sigmas = torch.tensor([0.3, 0.55, 0.9, 1.26, 1.5], dtype=torch.float64)  # 3 to 13 taps
    got = gaussian_blur(images, sigmas)
    for b in range(5):
        image = images[b].permute(1, 2, 0).numpy()
        expected = cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigmas[b]))
        np.testing.assert_allclose(got[b].permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-6)
    assert not torch.allclose(got, images, atol=1e-3)


def test_photometric_blur_matches_the_numpy_path_for_the_same_draws() -> None:
    images = crop_batch(3, seed=14)
    factors = torch.tensor([[1.1, 0.9, 1.2], [0.8, 1.1, 0.7], [1.3, 1.0, 1.0]])
    sigma = torch.tensor([0.7, 0.0, 1.4])  # the middle image is not blurred
    got = apply_photometric_(images.clone(), factors, None, sigma)
    for b in range(3):
        image = images[b].permute(1, 2, 0).numpy().copy()

        class Fixed:  # feeds `transforms.photometric` the chosen factors, blur gate and sigma
            def random(self, n: int | None = None, b: int = b) -> np.ndarray | float:
                return (factors[b].numpy().astype(np.float64) - 1.0 + 0.5) if n == 3 else 0.0

            def uniform(self, low: float, high: float, b: int = b) -> float:
                return float(sigma[b])

        expected = photometric(image, Fixed(), 0.5, 0.0, blur_prob=1.0 if sigma[b] > 0 else 0.0)  # type: ignore[arg-type]
        np.testing.assert_allclose(got[b].permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-5)


def test_blur_draws_follow_the_probability_and_range() -> None:
    sigma = blur_sigmas(blur_draws(4000, torch.Generator().manual_seed(0)), blur_prob=0.3)
    blurred = sigma[sigma > 0]
    assert abs(blurred.numel() / 4000 - 0.3) < 0.03
    assert blurred.min() >= BLUR_SIGMA_RANGE[0] and blurred.max() <= BLUR_SIGMA_RANGE[1]


def test_photometric_factors_lie_in_range() -> None:
    factors = photometric_factors(1000, torch.Generator().manual_seed(0), jitter=0.3)
    assert factors.shape == (1000, 3) and factors.min() >= 0.7 and factors.max() <= 1.3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    cuda = torch.device("cuda")
    images = torch.from_numpy(smooth_images(4, seed=9)).permute(0, 3, 1, 2).float()
    affines = torch.from_numpy(random_affines(4, seed=10))
    cpu_crops = warp_crops(images, affines, CROP_SIZE)
    gpu_crops = warp_crops(images.to(cuda), affines.to(cuda), CROP_SIZE)
    assert gpu_crops.device.type == "cuda"
    torch.testing.assert_close(gpu_crops.cpu(), cpu_crops, atol=1e-3, rtol=1e-5)

    keypoints = torch.from_numpy(random_keypoints(4, seed=11))
    cpu_maps, cpu_weights = gaussian_targets(keypoints, HEATMAP_SIZE, STRIDE, 2.0)
    gpu_maps, gpu_weights = gaussian_targets(keypoints.to(cuda), HEATMAP_SIZE, STRIDE, 2.0)
    assert gpu_maps.device.type == "cuda"
    torch.testing.assert_close(gpu_maps.cpu(), cpu_maps, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gpu_weights.cpu(), cpu_weights, atol=0, rtol=0)

    crops = crop_batch(4, seed=12)
    factors = photometric_factors(4, torch.Generator().manual_seed(0), 0.4)
    noise = torch.randn(crops.shape, generator=torch.Generator().manual_seed(1)) * 0.05
    sigma = torch.tensor([0.0, 0.4, 1.0, 1.5])
    cpu_out = apply_photometric_(crops.clone(), factors, noise, sigma)
    gpu_out = apply_photometric_(crops.to(cuda), factors.to(cuda), noise.to(cuda), sigma.to(cuda))
    torch.testing.assert_close(gpu_out.cpu(), cpu_out, atol=1e-5, rtol=1e-5)
    # the seeded CUDA path is reproducible too
    runs = [photometric_(crops.to(cuda), torch.Generator(cuda).manual_seed(3), 0.4, 0.05) for _ in range(2)]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
