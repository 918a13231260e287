"""Heatmaps -> keypoint coordinates in heatmap pixels, and the horizontal flip of heatmaps.

Coordinates follow `components.data.geometry`: integer values are pixel centres, so a peak at
heatmap pixel `u` means coordinate `u`. Both decoders work on whole batches at once.

- `argmax`: the integer peak, nudged a quarter pixel toward the higher neighbour (SimpleBaseline):
  halves the expected quantisation error at no cost.
- `dark`: Distribution-Aware coordinate Representation (Zhang et al., CVPR 2020): smooth the map
  with a Gaussian, take the log (a Gaussian's log is a quadratic) and step to the quadratic's
  maximum with a second-order Taylor expansion around the peak. Sub-pixel exact on Gaussian blobs.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np
import torch

from components.keypoints import FLIP_INDEX

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)
DecodeMethod = Literal["argmax", "dark"]

_LOG_FLOOR = 1e-10


def decode_heatmaps(
    heatmaps: ArrayOrTensor, method: DecodeMethod = "argmax", blur_sigma: float = 2.0
) -> tuple[ArrayOrTensor, ArrayOrTensor]:
    """Peak coordinates `[B,K,2]` (x, y in heatmap pixels) and peak values `[B,K]` of `[B,K,h,w]` maps.

    Returns the same kind (numpy or torch) as given. `blur_sigma` is DARK's smoothing, in heatmap
    pixels (the target sigma is the usual choice); it is unused by `argmax`.
    """
    as_numpy = isinstance(heatmaps, np.ndarray)
    maps = torch.from_numpy(heatmaps) if as_numpy else heatmaps
    if maps.ndim != 4:
        raise ValueError(f"heatmaps must be [B,K,h,w], got shape {tuple(maps.shape)}")
    maps = maps.detach().float()
    if method == "argmax":
        coords, maxvals = _decode_argmax(maps)
    elif method == "dark":
        coords, maxvals = _decode_dark(maps, blur_sigma)
    else:
        raise ValueError(f"unknown decoding method {method!r}; expected 'argmax' or 'dark'")
    if as_numpy:
        return coords.cpu().numpy(), maxvals.cpu().numpy()
    return coords, maxvals


def flip_heatmaps(heatmaps: torch.Tensor) -> torch.Tensor:
    """Heatmaps predicted on a mirrored input, expressed for the unmirrored input.

    Mirroring an input `W = w * stride` pixels wide maps x to `W - 1 - x`; in heatmap pixels that is
    `u -> w - 1 - u`, exactly an array reversal. So, under our pixel-centre convention, no one-pixel
    shift is needed (the shift other code bases apply compensates a convention where it is not).
    Left and right channels swap places.
    """
    index = torch.as_tensor(FLIP_INDEX, device=heatmaps.device)
    if heatmaps.shape[-3] != len(FLIP_INDEX):
        raise ValueError(f"flip needs {len(FLIP_INDEX)} COCO keypoint channels, got {heatmaps.shape[-3]}")
    return heatmaps.flip(-1).index_select(-3, index)


def _integer_peaks(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Column, row and value of each map's maximum (first one on ties)."""
    batch, joints, _, width = maps.shape
    maxvals, flat_index = maps.reshape(batch, joints, -1).max(dim=-1)
    return flat_index % width, flat_index // width, maxvals


def _sample(maps: torch.Tensor, cols: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """`maps[b, k, rows[b,k], cols[b,k]]`, with indices clamped into the map."""
    _, _, height, width = maps.shape
    flat = rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)
    return maps.flatten(2).gather(-1, flat.unsqueeze(-1)).squeeze(-1)


def _decode_argmax(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, height, width = maps.shape
    cols, rows, maxvals = _integer_peaks(maps)
    dx = _sample(maps, cols + 1, rows) - _sample(maps, cols - 1, rows)
    dy = _sample(maps, cols, rows + 1) - _sample(maps, cols, rows - 1)
    # no nudge on the border, where one neighbour is missing
    dx = torch.where((cols > 0) & (cols < width - 1), dx, torch.zeros_like(dx))
    dy = torch.where((rows > 0) & (rows < height - 1), dy, torch.zeros_like(dy))
    coords = torch.stack([cols.float() + 0.25 * dx.sign(), rows.float() + 0.25 * dy.sign()], dim=-1)
    return coords, maxvals


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    radius = max(1, int(round(3.0 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _smoothed_neighbourhood(maps: torch.Tensor, cols: torch.Tensor, rows: torch.Tensor, sigma: float) -> torch.Tensor:
    """The Gaussian-smoothed map on the 3x3 pixels around each peak, `[B,K,3,3]` indexed [row, col].

    Only the patch the kernel needs is gathered and smoothed, not the whole map: the Taylor step
    reads nine values, and blurring every map costs ~40x the rest of decoding. Indices are clamped
    into the map, which is the same as smoothing with edge replication.
    """
    batch, joints, height, width = maps.shape
    kernel = _gaussian_kernel(sigma, maps.device) if sigma > 0 else torch.ones(1, device=maps.device)
    reach = kernel.numel() // 2 + 1
    offsets = torch.arange(-reach, reach + 1, device=maps.device)
    row_index = (rows.unsqueeze(-1) + offsets).clamp(0, height - 1)
    col_index = (cols.unsqueeze(-1) + offsets).clamp(0, width - 1)
    b = torch.arange(batch, device=maps.device).view(-1, 1, 1, 1)
    k = torch.arange(joints, device=maps.device).view(1, -1, 1, 1)
    patch = maps[b, k, row_index.unsqueeze(-1), col_index.unsqueeze(-2)]
    size = kernel.numel()
    across = (patch.unfold(-1, size, 1) * kernel).sum(-1)
    return (across.unfold(-2, size, 1) * kernel).sum(-1)


def _decode_dark(maps: torch.Tensor, blur_sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, height, width = maps.shape
    cols, rows, maxvals = _integer_peaks(maps)
    log_patch = _smoothed_neighbourhood(maps, cols, rows, blur_sigma).clamp_min(_LOG_FLOOR).log()

    def at(dc: int, dr: int) -> torch.Tensor:
        return log_patch[..., 1 + dr, 1 + dc]

    centre = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = at(1, 0) - 2.0 * centre + at(-1, 0)
    hyy = at(0, 1) - 2.0 * centre + at(0, -1)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    inside = (cols > 0) & (cols < width - 1) & (rows > 0) & (rows < height - 1)
    # a maximum needs a negative-definite Hessian; elsewhere (flat or border) keep the integer peak
    usable = inside & (hxx < 0) & (det > 0)
    safe_det = torch.where(usable, det, torch.ones_like(det))
    # offset = -H^-1 g, with the 2x2 inverse written out
    offset_x = -(hyy * gx - hxy * gy) / safe_det
    offset_y = -(hxx * gy - hxy * gx) / safe_det
    offset = torch.stack([offset_x, offset_y], dim=-1).clamp(-1.0, 1.0)
    offset = torch.where(usable.unsqueeze(-1), offset, torch.zeros_like(offset))
    coords = torch.stack([cols.float(), rows.float()], dim=-1) + offset
    return coords, maxvals
