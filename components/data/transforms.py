"""Augmentation for top-down crops: sampling a view's affine, warping it, photometric noise.

A *view* is everything that decides where the crop comes from: the box centre and padded size,
a zoom, a rotation and a mirror. Its affine (image px -> crop input px) is built with the shared
geometry helpers, so a keypoint, a heatmap or another view can always be carried across exactly.
All randomness comes from a caller-supplied `numpy.random.Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from components.data.geometry import Affine, box_to_center_scale, compose_affine, crop_affine, hflip_affine
from components.keypoints import KeypointSet

# Crops are small and loaders parallelise across worker processes, so OpenCV's own thread pool only
# oversubscribes the cores; worse, a DataLoader worker fork()ed while that pool is alive can deadlock
# inside OpenCV. Keeping OpenCV single-threaded from import on avoids both.
cv2.setNumThreads(0)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

HALF_BODY_MIN_VISIBLE = 8  # people with fewer labeled keypoints are not cut in half
HALF_BODY_MIN_PART = 2  # a half needs at least this many labeled keypoints to define a box
HALF_BODY_EXPAND = 1.5  # a half's keypoint extent is tight; give the crop room around it


@dataclass(frozen=True)
class View:
    """One crop of a person: padded region (centre, w/h in image px), rotation in degrees, mirror."""

    center: NDArray[np.float64]
    scale: NDArray[np.float64]
    rotation: float = 0.0
    flip: bool = False

    def affine(self, input_size: tuple[int, int]) -> Affine:
        """Image pixels -> crop input pixels; a mirrored view flips inside the crop after the warp."""
        matrix = crop_affine(self.center, self.scale, self.rotation, input_size)
        if self.flip:
            matrix = compose_affine(hflip_affine(input_size[1]), matrix)
        return matrix


def base_view(bbox_xywh: NDArray[np.float64], aspect_ratio: float, padding: float) -> View:
    """The un-augmented crop of a box: aspect fixed to the input's, padded."""
    center, scale = box_to_center_scale(bbox_xywh, aspect_ratio, padding)
    return View(center=center, scale=scale)


def sample_view(
    view: View,
    rng: np.random.Generator,
    scale_factor: float,
    rotation: float,
    rotation_prob: float = 1.0,
    flip_prob: float = 0.0,
) -> View:
    """Zoom uniformly in [1 - f, 1 + f], rotate uniformly in [-r, r] with `rotation_prob`, mirror with `flip_prob`.

    Draws a fixed number of values whatever the settings, so toggling one option does not shift
    the random stream of the others.
    """
    zoom_u, rotate_gate, rotate_u, flip_u = rng.random(4)
    zoom = 1.0 + scale_factor * (2.0 * zoom_u - 1.0)
    angle = rotation * (2.0 * rotate_u - 1.0) if rotate_gate < rotation_prob else 0.0
    scale = view.scale * max(zoom, 1e-3)
    return View(center=view.center, scale=scale, rotation=float(angle), flip=bool(flip_u < flip_prob))


def half_body_view(
    keypoints: NDArray[np.float32], rng: np.random.Generator, aspect_ratio: float, keypoint_set: KeypointSet
) -> View | None:
    """A crop around the upper or the lower body's labeled keypoints, or None when too few are labeled
    (or the set has no `upper_body`: half-body is off)."""
    if not keypoint_set.upper_body:
        return None
    labeled = keypoints[:, 2] > 0
    if np.count_nonzero(labeled) < HALF_BODY_MIN_VISIBLE:
        return None
    upper = [k for k in keypoint_set.upper_body if labeled[k]]
    lower = [k for k in keypoint_set.lower_body if labeled[k]]
    pick_upper = rng.random() < 0.5
    part = upper if (pick_upper and len(upper) >= HALF_BODY_MIN_PART) else lower
    if len(part) < HALF_BODY_MIN_PART:
        part = upper
    if len(part) < HALF_BODY_MIN_PART:
        return None
    points = keypoints[part, :2].astype(np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    size = np.maximum(high - low, 1.0)
    center, scale = box_to_center_scale([*low, *size], aspect_ratio, HALF_BODY_EXPAND)
    return View(center=center, scale=scale)


def warp(image: NDArray[np.uint8], affine: Affine, input_size: tuple[int, int]) -> NDArray[np.uint8]:
    """The crop, bilinear, zeros outside the image. `input_size` is (h, w)."""
    height, width = input_size
    crop = cv2.warpAffine(
        image, affine.astype(np.float64), (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return np.asarray(crop, dtype=np.uint8)


def photometric(
    image: NDArray[np.float32],
    rng: np.random.Generator,
    jitter: float,
    noise_std: float,
    blur_prob: float = 0.0,
) -> NDArray[np.float32]:
    """Brightness, contrast, saturation in [1 - j, 1 + j], optional Gaussian blur, additive noise.

    `image` is RGB float32 in [0, 1], HxWx3; the result is clipped back to [0, 1].
    """
    brightness, contrast, saturation = 1.0 + jitter * (2.0 * rng.random(3) - 1.0)
    blur_u, blur_sigma = rng.random(), rng.uniform(0.3, 1.5)
    out = image * np.float32(brightness)
    gray = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = (out - gray.mean()) * np.float32(contrast) + gray.mean()
    gray = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = (out - gray[..., None]) * np.float32(saturation) + gray[..., None]
    if blur_u < blur_prob:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(blur_sigma))
    if noise_std > 0:
        out += gaussian_noise(out.shape, noise_std, rng)
    return np.clip(out, 0.0, 1.0, out=out)


def gaussian_noise(shape: tuple[int, ...], std: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """Zero-mean Gaussian noise, seeded from `rng`. OpenCV's generator is about 3x faster than numpy's
    here, where noise is the costliest part of a hard view; it is re-seeded per call, so still reproducible."""
    cv2.setRNGSeed(int(rng.integers(2**31 - 1)))
    noise = np.empty(shape, dtype=np.float32)
    channels = shape[-1] if len(shape) == 3 else 1
    cv2.randn(noise, (0.0,) * channels, (float(std),) * channels)  # type: ignore[call-overload]  # cv2 stubs want a Mat
    return noise


def to_tensor(image: NDArray[np.uint8] | NDArray[np.float32]) -> torch.Tensor:
    """HxWx3 RGB (uint8, or float in [0, 1]) -> [3, H, W] float32 normalised with ImageNet statistics."""
    pixels = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32, copy=False)
    normalised = (pixels - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))


def denormalise(tensor: torch.Tensor) -> NDArray[np.uint8]:
    """[3, H, W] normalised tensor -> HxWx3 uint8 RGB, for visualisation and tests."""
    pixels = tensor.detach().cpu().numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
