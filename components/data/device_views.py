"""Batched, device-side twins of the crop warp, the heatmap targets and the photometric noise.

The loader path (`transforms.warp`, `targets.gaussian_heatmaps`, `transforms.photometric`) runs per
person in numpy/OpenCV on the CPU workers. On a GPU that work can starve the card, so these
functions do the same operations on a whole batch of tensors, on whatever device the inputs live
(no host syncs, no Python loops over pixels or people). They follow `components.data.geometry`'s
convention exactly: integer coordinates are pixel centres, an affine maps image px -> crop input px,
and heatmap pixel `u` is centred on input coordinate `(u + 0.5) * stride - 0.5`.

They are not wired into the datasets or the trainer yet (issue 6): the CPU path stays the default
until the GPU path is measured against it on a GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights, the same as `transforms.photometric`
_LUMA = (0.299, 0.587, 0.114)


def invert_affines(affines: torch.Tensor) -> torch.Tensor:
    """Inverse of each [2, 3] affine in a [B, 2, 3] batch (computed in float64: crops zoom a lot)."""
    m = affines.to(torch.float64)
    linear_inv = torch.linalg.inv(m[:, :, :2])
    offset = -(linear_inv @ m[:, :, 2:])
    return torch.cat([linear_inv, offset], dim=2)


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
        dtype=dtype, device=device,
    )
    # source px -> normalised source (a 1-pixel side has no extent: keep it finite)
    sx, sy = 2.0 / max(src_w - 1, 1), 2.0 / max(src_h - 1, 1)
    to_norm = torch.tensor([[sx, 0.0, -1.0], [0.0, sy, -1.0]], dtype=dtype, device=device)
    crop_to_image = invert_affines(affines)  # [B, 2, 3]
    bottom = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=dtype, device=device).expand(affines.shape[0], 1, 3)
    crop_to_image = torch.cat([crop_to_image, bottom], dim=1)  # [B, 3, 3]
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
    theta = pixel_affines_to_theta(affines.to(images.device), tuple(images.shape[-2:]), output_size)
    grid = F.affine_grid(theta.to(images.dtype), [batch, channels, *output_size], align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def gaussian_targets(
    keypoints: torch.Tensor, heatmap_size: tuple[int, int], stride: int, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps [B, K, h, w] float32 and weights [B, K] for keypoints [B, K, 3] (x, y in input px, visibility).

    The batched twin of `targets.gaussian_heatmaps`: an unrounded, separable Gaussian (sigma in heatmap
    px); weight 0 and an all-zero map for an unlabeled keypoint or one outside the heatmap. Positions
    and profiles are computed in float64 (tiny: [B, K, h + w]) so the result matches the numpy path.
    """
    height, width = heatmap_size
    device = keypoints.device
    points = keypoints.to(torch.float64)
    centres = (points[..., :2] + 0.5) / stride - 0.5  # geometry.input_to_heatmap
    limits = torch.tensor([width, height], dtype=torch.float64, device=device) - 0.5
    inside = ((centres >= -0.5) & (centres < limits)).all(dim=-1)
    weights = ((points[..., 2] > 0) & inside).to(torch.float32)
    scale = -0.5 / (sigma * sigma)
    xs = torch.arange(width, dtype=torch.float64, device=device)
    ys = torch.arange(height, dtype=torch.float64, device=device)
    columns = torch.exp(scale * (xs - centres[..., 0:1]) ** 2)  # [B, K, w]
    rows = torch.exp(scale * (ys - centres[..., 1:2]) ** 2) * weights[..., None].to(torch.float64)  # [B, K, h]
    heatmaps = (rows[..., :, None] * columns[..., None, :]).to(torch.float32)
    return heatmaps, weights


def photometric_factors(batch: int, generator: torch.Generator, jitter: float) -> torch.Tensor:
    """Per-image (brightness, contrast, saturation) [B, 3], each uniform in [1 - j, 1 + j], on the generator's device.

    Drawn apart from their application so a test (or a CPU/GPU comparison) can apply the same factors.
    """
    u = torch.rand(batch, 3, generator=generator, device=generator.device, dtype=torch.float32)
    return 1.0 + jitter * (2.0 * u - 1.0)


def apply_photometric_(images: torch.Tensor, factors: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """In place on RGB images [B, 3, H, W] in [0, 1]: the same operations as `transforms.photometric`.

    Brightness scales; contrast scales about the image's mean luma; saturation scales about each
    pixel's luma; then `noise` (same shape) is added and the result clipped to [0, 1]. No blur yet.
    """
    f = factors.to(device=images.device, dtype=images.dtype)
    luma = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    images.mul_(f[:, 0].view(-1, 1, 1, 1))
    mean = (images * luma).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    images.sub_(mean).mul_(f[:, 1].view(-1, 1, 1, 1)).add_(mean)
    gray = (images * luma).sum(dim=1, keepdim=True)
    images.sub_(gray).mul_(f[:, 2].view(-1, 1, 1, 1)).add_(gray)
    if noise is not None:
        images.add_(noise.to(images.dtype))
    return images.clamp_(0.0, 1.0)


def photometric_(
    images: torch.Tensor, generator: torch.Generator, jitter: float, noise_std: float
) -> torch.Tensor:
    """Colour jitter and additive Gaussian noise, in place on RGB images [B, 3, H, W] in [0, 1].

    All randomness comes from `generator`, which must live on the images' device; a fixed number of
    draws in a fixed order (factors, then noise) makes a seeded generator reproduce the batch. CPU
    and CUDA generators give different streams, so only factors drawn once compare across devices.
    """
    factors = photometric_factors(images.shape[0], generator, jitter)
    noise = None
    if noise_std > 0:
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype) * noise_std
    return apply_photometric_(images, factors, noise)
