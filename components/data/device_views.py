"""Batched, device-side twins of the crop warp, the heatmap targets and the photometric noise.

The loader path (`transforms.warp`, `transforms.photometric`) runs per
person in numpy/OpenCV on the CPU workers. On a GPU that work can starve the card, so these
functions do the same operations on a whole batch of tensors (the targets' twin is
`heatmap_codec.gaussian_targets`), on whatever device the inputs live
(no host syncs, no Python loops over pixels or people). They follow `components.data.geometry`'s
convention exactly: integer coordinates are pixel centres, an affine maps image px -> crop input px,
and heatmap pixel `u` is centred on input coordinate `(u + 0.5) * stride - 0.5`.

The view sampling (`sample_views`, `half_body_views`, `base_views`, `crop_affines`) draws the same
distributions as `transforms.sample_view` / `half_body_view` from a `torch.Generator`, a fixed
number of draws per batch, so a seeded generator on any device reproduces a batch.
`components.data.device_pipeline` composes them into the trainer's `train.data_path: gpu`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from components.data.geometry import boxes_to_centers_scales
from components.data.transforms import HALF_BODY_EXPAND, HALF_BODY_MIN_PART, HALF_BODY_MIN_VISIBLE
from components.keypoints import KeypointSet

# ITU-R BT.601 luma weights, the same as `transforms.photometric`
_LUMA = (0.299, 0.587, 0.114)
BLUR_SIGMA_RANGE = (0.3, 1.5)  # `transforms.photometric`'s uniform blur sigma
# cv2.GaussianBlur's kernel for float images spans round(8 sigma + 1) | 1 taps: 13 at the largest sigma
_BLUR_TAPS = round(8 * BLUR_SIGMA_RANGE[1] + 1) | 1


class ViewBatch(NamedTuple):
    """A batch of `transforms.View`s as float64 tensors: centre and padded (w, h) [B, 2], degrees [B], mirror [B]."""

    center: torch.Tensor
    scale: torch.Tensor
    rotation: torch.Tensor
    flip: torch.Tensor

    def affines(self, input_size: tuple[int, int]) -> torch.Tensor:
        return crop_affines(self, input_size)


def base_views(boxes_xywh: torch.Tensor, aspect_ratio: float, padding: float) -> ViewBatch:
    """Batched `transforms.base_view`: the un-augmented padded crops of boxes [B, 4]."""
    center, scale = boxes_to_centers_scales(boxes_xywh.to(torch.float64), aspect_ratio, padding)
    zeros = torch.zeros(center.shape[0], dtype=torch.float64, device=center.device)
    return ViewBatch(center, scale, zeros, zeros.bool())


def crop_affines(views: ViewBatch, output_size: tuple[int, int]) -> torch.Tensor:
    """Batched `transforms.View.affine`: image px -> crop input px [B, 2, 3] float64, mirror included."""
    out_h, out_w = output_size
    theta = views.rotation.to(torch.float64) * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    zoom_x, zoom_y = out_w / views.scale[:, 0], out_h / views.scale[:, 1]
    linear = torch.stack(
        [torch.stack([zoom_x * cos, zoom_x * sin], 1), torch.stack([-zoom_y * sin, zoom_y * cos], 1)], 1
    )
    out_centre = torch.tensor([(out_w - 1) * 0.5, (out_h - 1) * 0.5], dtype=torch.float64, device=theta.device)
    offset = out_centre - (linear @ views.center.to(torch.float64)[:, :, None])[:, :, 0]
    affines = torch.cat([linear, offset[:, :, None]], dim=2)
    # a mirror inside the crop (geometry.hflip_affine) after the warp: x -> w - 1 - x
    mirrored = affines.clone()
    mirrored[:, 0] = -mirrored[:, 0]
    mirrored[:, 0, 2] += out_w - 1
    return torch.where(views.flip[:, None, None], mirrored, affines)


def sample_views(
    views: ViewBatch,
    draws: torch.Tensor,
    scale_factor: float,
    rotation: float,
    rotation_prob: float = 1.0,
    flip_prob: float = 0.0,
) -> ViewBatch:
    """Batched `transforms.sample_view` from uniforms `draws` [B, 4] (zoom, rotation gate, rotation, mirror)."""
    zoom_u, gate, rotate_u, flip_u = draws.to(torch.float64).unbind(1)
    zoom = (1.0 + scale_factor * (2.0 * zoom_u - 1.0)).clamp(min=1e-3)
    angle = torch.where(gate < rotation_prob, rotation * (2.0 * rotate_u - 1.0), torch.zeros_like(rotate_u))
    return ViewBatch(views.center, views.scale * zoom[:, None], angle, flip_u < flip_prob)


def _part_mask(indices: tuple[int, ...], num_keypoints: int, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(num_keypoints, dtype=torch.bool, device=device)
    mask[list(indices)] = True
    return mask


def half_body_views(
    keypoints: torch.Tensor, pick_upper_u: torch.Tensor, aspect_ratio: float, keypoint_set: KeypointSet
) -> tuple[ViewBatch, torch.Tensor]:
    """Batched `transforms.half_body_view` for keypoints [B, K, 3]: the views and where one exists [B].

    The upper half is tried when `pick_upper_u < 0.5` and has enough labeled keypoints, else the
    lower, else the upper again, as on the CPU; where neither qualifies (or the set has no upper
    body) the view is garbage and the returned mask is false.
    """
    device = keypoints.device
    labeled = keypoints[..., 2] > 0
    num_keypoints = keypoints.shape[1]
    upper = labeled & _part_mask(keypoint_set.upper_body, num_keypoints, device)
    lower = labeled & _part_mask(keypoint_set.lower_body, num_keypoints, device)
    n_upper, n_lower = upper.sum(1), lower.sum(1)
    first_upper = (pick_upper_u < 0.5) & (n_upper >= HALF_BODY_MIN_PART)
    use_upper = first_upper | (n_lower < HALF_BODY_MIN_PART)
    part = torch.where(use_upper[:, None], upper, lower)
    exists = (labeled.sum(1) >= HALF_BODY_MIN_VISIBLE) & (part.sum(1) >= HALF_BODY_MIN_PART)
    exists &= bool(keypoint_set.upper_body)
    points = keypoints[..., :2].to(torch.float64)
    low = torch.where(part[..., None], points, math.inf).amin(1)
    high = torch.where(part[..., None], points, -math.inf).amax(1)
    low = torch.where(exists[:, None], low, 0.0)
    size = torch.where(exists[:, None], (high - low).clamp(min=1.0), 1.0)
    center, scale = boxes_to_centers_scales(torch.cat([low, size], 1).to(torch.float64), aspect_ratio, HALF_BODY_EXPAND)
    zeros = torch.zeros_like(center[:, 0])
    return ViewBatch(center, scale, zeros, zeros.bool()), exists


def where_views(condition: torch.Tensor, chosen: ViewBatch, other: ViewBatch) -> ViewBatch:
    """Per sample, `chosen` where `condition` [B] holds, else `other`."""
    pick = [torch.where(condition.view(-1, *([1] * (a.dim() - 1))), a, b) for a, b in zip(chosen, other)]
    return ViewBatch(*pick)


def invert_affines(affines: torch.Tensor) -> torch.Tensor:
    """Inverse of each [2, 3] affine in a [B, 2, 3] batch (computed in float64: crops zoom a lot)."""
    m = affines.to(torch.float64)
    linear_inv = torch.linalg.inv(m[:, :, :2])
    offset = -(linear_inv @ m[:, :, 2:])
    return torch.cat([linear_inv, offset], dim=2)


def homogeneous_affines(affines: torch.Tensor) -> torch.Tensor:
    """[B, 2, 3] affines -> [B, 3, 3] matrices with the row [0, 0, 1] added, so they compose with `@`."""
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=affines.dtype, device=affines.device).expand(affines.shape[0], 1, 3)
    return torch.cat([affines, bottom], dim=1)


def apply_affines(points: torch.Tensor, affines: torch.Tensor) -> torch.Tensor:
    """Points [B, N, 2] through per-sample affines [B, 2, 3], e.g. keypoints into their crops."""
    m = affines.to(points.dtype)
    return points @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]


def pixel_affines_to_theta(
    affines: torch.Tensor, source_size: tuple[int, int], output_size: tuple[int, int]
) -> torch.Tensor:
    """The `F.affine_grid` theta (align_corners=True) for image -> crop pixel affines [B, 2, 3].

    `affine_grid` wants the *inverse* map (output -> source) in normalised coordinates. With
    align_corners=True, normalised -1 and +1 are the centres of the first and last pixel, i.e. pixel
    x = (x_n + 1) * (W - 1) / 2, which is exactly the pixel-centre convention of the geometry module.
    `source_size` and `output_size` are (h, w).
    """
    src_h, src_w = source_size
    out_h, out_w = output_size
    dtype, device = torch.float64, affines.device
    # normalised output -> output px
    from_norm = torch.tensor(
        [[(out_w - 1) / 2, 0.0, (out_w - 1) / 2], [0.0, (out_h - 1) / 2, (out_h - 1) / 2], [0.0, 0.0, 1.0]],
        dtype=dtype,
        device=device,
    )
    # source px -> normalised source (a 1-pixel side has no extent: keep it finite)
    sx, sy = 2.0 / max(src_w - 1, 1), 2.0 / max(src_h - 1, 1)
    to_norm = torch.tensor([[sx, 0.0, -1.0], [0.0, sy, -1.0]], dtype=dtype, device=device)
    crop_to_image = homogeneous_affines(invert_affines(affines))  # [B, 3, 3]
    return to_norm @ crop_to_image @ from_norm


def warp_crops(images: torch.Tensor, affines: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
    """Crops [B, C, H, W] of images [B, C, Hs, Ws] under image -> crop affines [B, 2, 3]; `output_size` is (H, W).

    Bilinear with zeros outside the image, like `transforms.warp` (cv2.warpAffine, BORDER_CONSTANT 0);
    integer images are sampled as float32. Images of different sizes must be padded to a common
    (Hs, Ws) first (bottom/right padding leaves pixel coordinates unchanged); the padding then reads
    as in-image, so pad with zeros to keep cv2's border.
    """
    if not images.is_floating_point():
        images = images.to(torch.float32)
    batch, channels = images.shape[:2]
    theta = pixel_affines_to_theta(affines.to(images.device), (images.shape[-2], images.shape[-1]), output_size)
    grid = F.affine_grid(theta.to(images.dtype), [batch, channels, *output_size], align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def photometric_factors(batch: int, generator: torch.Generator, jitter: float) -> torch.Tensor:
    """Per-image (brightness, contrast, saturation) [B, 3], each uniform in [1 - j, 1 + j], on the generator's device.

    Drawn apart from their application so a test (or a CPU/GPU comparison) can apply the same factors.
    """
    u = torch.rand(batch, 3, generator=generator, device=generator.device, dtype=torch.float32)
    return 1.0 + jitter * (2.0 * u - 1.0)


def gaussian_kernels(sigma: torch.Tensor, taps: int = _BLUR_TAPS) -> torch.Tensor:
    """1-D Gaussian kernels [B, taps] of cv2.GaussianBlur for float images: round(8 sigma + 1) | 1 taps
    (zero beyond them), normalised to sum 1, computed in float64."""
    sigma = sigma.to(torch.float64)
    own_taps = torch.floor(8.0 * sigma + 1.5).long() | 1  # cvRound(8 sigma + 1) | 1 (sigma > 0)
    offsets = torch.arange(taps, dtype=torch.float64, device=sigma.device) - (taps - 1) / 2
    weights = torch.exp(-(offsets**2) / (2.0 * sigma[:, None] ** 2))
    weights = weights * (offsets.abs() <= ((own_taps - 1) // 2)[:, None])
    return weights / weights.sum(1, keepdim=True)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur of images [B, C, H, W] with sigmas [B] in `BLUR_SIGMA_RANGE`.

    The twin of `cv2.GaussianBlur(image, (0, 0), sigma)` on float images: the same separable
    kernels and cv2's default border (BORDER_REFLECT_101, which is torch's "reflect" padding). One
    grouped convolution per axis blurs the whole batch, each image with its own kernel.
    """
    batch, channels, height, width = images.shape
    kernels = gaussian_kernels(sigma).to(images.dtype)  # [B, T]
    taps = kernels.shape[1]
    pad = taps // 2
    weight = kernels.repeat_interleave(channels, dim=0)  # [B*C, T]
    flat = images.reshape(1, batch * channels, height, width)
    rows = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), weight.view(-1, 1, 1, taps), groups=batch * channels)
    out = F.conv2d(F.pad(rows, (0, 0, pad, pad), mode="reflect"), weight.view(-1, 1, taps, 1), groups=batch * channels)
    return out.view(batch, channels, height, width)


def blur_draws(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Per-image (blur gate, blur sigma) [B, 2] uniforms, drawn apart like `photometric_factors`."""
    return torch.rand(batch, 2, generator=generator, device=generator.device, dtype=torch.float32)


def blur_sigmas(draws: torch.Tensor, blur_prob: float) -> torch.Tensor:
    """Sigma per image from `blur_draws`, 0 where the gate says no blur."""
    low, high = BLUR_SIGMA_RANGE
    sigma = low + (high - low) * draws[:, 1]
    return torch.where(draws[:, 0] < blur_prob, sigma, torch.zeros_like(sigma))


def apply_photometric_(
    images: torch.Tensor,
    factors: torch.Tensor,
    noise: torch.Tensor | None = None,
    blur_sigma: torch.Tensor | None = None,
) -> torch.Tensor:
    """In place on RGB images [B, 3, H, W] in [0, 1]: the same operations as `transforms.photometric`.

    Brightness scales; contrast scales about the image's mean luma; saturation scales about each
    pixel's luma; images with a positive `blur_sigma` [B] are blurred; then `noise` (same shape) is
    added and the result clipped to [0, 1].
    """
    f = factors.to(device=images.device, dtype=images.dtype)
    luma = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    images.mul_(f[:, 0].view(-1, 1, 1, 1))
    mean = (images * luma).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    images.sub_(mean).mul_(f[:, 1].view(-1, 1, 1, 1)).add_(mean)
    gray = (images * luma).sum(dim=1, keepdim=True)
    images.sub_(gray).mul_(f[:, 2].view(-1, 1, 1, 1)).add_(gray)
    if blur_sigma is not None:
        blurred = blur_sigma.to(images.device) > 0
        if blurred.any():  # one host sync; skips two convolutions on the many batches with no blur at all
            sigma = blur_sigma.to(device=images.device).clamp(min=BLUR_SIGMA_RANGE[0])
            images.copy_(torch.where(blurred.view(-1, 1, 1, 1), gaussian_blur(images, sigma), images))
    if noise is not None:
        images.add_(noise.to(images.dtype))
    return images.clamp_(0.0, 1.0)


def photometric_(
    images: torch.Tensor, generator: torch.Generator, jitter: float, noise_std: float, blur_prob: float = 0.0
) -> torch.Tensor:
    """Colour jitter, blur with `blur_prob` and additive Gaussian noise, in place on RGB images [B, 3, H, W] in [0, 1].

    All randomness comes from `generator`, which must live on the images' device; a fixed number of
    draws in a fixed order (factors, blur, then noise) makes a seeded generator reproduce the batch.
    CPU and CUDA generators give different streams, so only factors drawn once compare across devices.
    """
    factors = photometric_factors(images.shape[0], generator, jitter)
    sigma = blur_sigmas(blur_draws(images.shape[0], generator), blur_prob)
    noise = None
    if noise_std > 0:
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype) * noise_std
    return apply_photometric_(images, factors, noise, sigma)
