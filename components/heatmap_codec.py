"""The heatmap codec: keypoints -> Gaussian heatmap targets, and heatmaps -> keypoints.

One module for both directions (MMPose keeps its codecs the same way), used by the datasets and the
device-side views (encode), and by the objective's pseudo-labels and by evaluation (decode).
Coordinates follow `components.data.geometry`: integer values are pixel centres, and heatmap pixel
`u` is centred on input coordinate `(u + 0.5) * stride - 0.5`.

Encode. The Gaussian is centred on the exact (unrounded) heatmap coordinate, so a decoder with
sub-pixel refinement can recover the label without the quantisation bias of integer-centred targets.
It is separable, so each heatmap is an outer product of a row and a column profile: no loop over
pixels or keypoints. `gaussian_heatmaps` encodes one person in numpy (loader workers),
`gaussian_targets` a batch in torch on any device (the same numbers).

Decode, on whole batches:
- `heatmap_peaks`: the integer argmax and its value (pseudo-label positions and confidences);
- `argmax`: the integer peak, nudged a quarter pixel toward the higher neighbour (SimpleBaseline):
  halves the expected quantisation error at no cost;
- `dark`: Distribution-Aware coordinate Representation (Zhang et al., CVPR 2020): smooth the map
  with a Gaussian, take the log (a Gaussian's log is a quadratic) and step to the quadratic's
  maximum with a second-order Taylor expansion around the peak. Sub-pixel exact on Gaussian blobs.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import torch
from numpy.typing import NDArray

from components.data.geometry import input_to_heatmap

DecodeMethod = Literal["argmax", "dark"]

_LOG_FLOOR = 1e-10


def gaussian_heatmaps(
    keypoints: NDArray[np.floating],
    heatmap_size: tuple[int, int],
    stride: int,
    sigma: float,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Heatmaps [K, h, w] and weights [K] for keypoints [K, 3] (x, y in input px, visibility).

    A keypoint gets weight 0 and an all-zero heatmap when it is unlabeled (visibility 0) or when
    its position falls outside the heatmap (outside the input crop), since the network cannot be
    asked to point at it. `sigma` is in heatmap pixels.
    """
    height, width = heatmap_size
    points = np.asarray(keypoints, dtype=np.float64)
    centres = input_to_heatmap(points[:, :2], stride)
    inside = np.all((centres >= -0.5) & (centres < np.array([width, height]) - 0.5), axis=1)
    weights = ((points[:, 2] > 0) & inside).astype(np.float32)
    scale = -0.5 / (sigma * sigma)
    columns = np.exp(scale * (np.arange(width)[None, :] - centres[:, 0:1]) ** 2)
    rows = np.exp(scale * (np.arange(height)[None, :] - centres[:, 1:2]) ** 2)
    heatmaps = (rows[:, :, None] * columns[:, None, :]).astype(np.float32)
    heatmaps *= weights[:, None, None]
    return heatmaps, weights


def gaussian_targets(
    keypoints: torch.Tensor, heatmap_size: tuple[int, int], stride: int, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps [B, K, h, w] float32 and weights [B, K] for keypoints [B, K, 3] (x, y in input px, visibility).

    The batched twin of `gaussian_heatmaps`: an unrounded, separable Gaussian (sigma in heatmap
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


@overload
def decode_heatmaps(
    heatmaps: NDArray[Any], method: DecodeMethod = ..., blur_sigma: float = ...
) -> tuple[NDArray[Any], NDArray[Any]]: ...


@overload
def decode_heatmaps(
    heatmaps: torch.Tensor, method: DecodeMethod = ..., blur_sigma: float = ...
) -> tuple[torch.Tensor, torch.Tensor]: ...


def decode_heatmaps(
    heatmaps: NDArray[Any] | torch.Tensor, method: DecodeMethod = "argmax", blur_sigma: float = 2.0
) -> tuple[NDArray[Any], NDArray[Any]] | tuple[torch.Tensor, torch.Tensor]:
    """Peak coordinates `[B,K,2]` (x, y in heatmap pixels) and peak values `[B,K]` of `[B,K,h,w]` maps.

    Returns the same kind (numpy or torch) as given. `blur_sigma` is DARK's smoothing, in heatmap
    pixels (the target sigma is the usual choice); it is unused by `argmax`.
    """
    as_numpy = isinstance(heatmaps, np.ndarray)
    maps = torch.from_numpy(heatmaps) if isinstance(heatmaps, np.ndarray) else heatmaps
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


def flip_heatmaps(heatmaps: torch.Tensor, flip_index: NDArray[np.int64] | torch.Tensor) -> torch.Tensor:
    """Heatmaps predicted on a mirrored input, expressed for the unmirrored input.

    Mirroring an input `W = w * stride` pixels wide maps x to `W - 1 - x`; in heatmap pixels that is
    `u -> w - 1 - u`, exactly an array reversal. So, under our pixel-centre convention, no one-pixel
    shift is needed (the shift other code bases apply compensates a convention where it is not).
    Left and right channels swap places (`flip_index`: the keypoint set's permutation).
    """
    index = torch.as_tensor(flip_index, device=heatmaps.device)
    if heatmaps.shape[-3] != len(index):
        raise ValueError(f"flip needs {len(index)} keypoint channels (the set's), got {heatmaps.shape[-3]}")
    return heatmaps.flip(-1).index_select(-3, index)


def heatmap_peaks(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax of each map: coords [B,K,2] as (x, y) heatmap pixels (in the maps' dtype) and peak values [B,K]."""
    cols, rows, maxvals = _integer_peaks(heatmaps)
    return torch.stack([cols, rows], dim=-1).to(heatmaps.dtype), maxvals


def heatmap_to_input_tensor(coords: torch.Tensor, stride: int) -> torch.Tensor:
    """Heatmap-pixel coordinates -> input pixels (`geometry.heatmap_to_input`, on tensors)."""
    return (coords + 0.5) * stride - 0.5


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
