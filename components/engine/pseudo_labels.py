"""Pseudo-labels: carry easy-view heatmaps into the hard view's frame (their peaks: `heatmap_codec`).

The datasets give `easy_to_hard`, an affine on input pixels (pixel centres at integers, see
components/data/geometry.py). It is expressed in heatmap pixels, inverted (grid_sample pulls each
hard-view pixel from the easy view) and normalised for `align_corners=False`, whose grid also
puts pixel centres at `(2 p + 1) / size - 1`. When the hard view is mirrored, left and right
keypoint channels are swapped with the keypoint set's flip index.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from components.data.device_views import homogeneous_affines


def _scale_offset(batch: int, sx: float, sy: float, ox: float, oy: float, like: torch.Tensor) -> torch.Tensor:
    m = torch.tensor([[sx, 0.0, ox], [0.0, sy, oy], [0.0, 0.0, 1.0]], dtype=like.dtype, device=like.device)
    return m.expand(batch, 3, 3)


def heatmap_affine(easy_to_hard: torch.Tensor, stride: int) -> torch.Tensor:
    """Input-pixel affines [B,2,3] -> the same maps on heatmap pixels, [B,3,3] float64."""
    a = homogeneous_affines(easy_to_hard.to(torch.float64))
    batch, c = a.shape[0], 0.5 * stride - 0.5
    to_input = _scale_offset(batch, stride, stride, c, c, a)
    to_heatmap = _scale_offset(batch, 1.0 / stride, 1.0 / stride, -c / stride, -c / stride, a)
    return to_heatmap @ a @ to_input


def warp_heatmaps(
    heatmaps: torch.Tensor,
    easy_to_hard: torch.Tensor,
    flipped: torch.Tensor,
    stride: int,
    flip_index: NDArray[np.int64] | torch.Tensor,
) -> torch.Tensor:
    """Easy-view heatmaps [B,K,h,w] resampled into the hard view; areas outside the easy view are 0.

    Where `flipped`, channel k of the result is channel `flip_index[k]` of the warp."""
    batch, num_kp, h, w = heatmaps.shape
    if easy_to_hard.shape != (batch, 2, 3):
        raise ValueError(f"easy_to_hard must be [{batch},2,3], got {tuple(easy_to_hard.shape)}")
    hard_to_easy = torch.linalg.inv(heatmap_affine(easy_to_hard.to(heatmaps.device), stride))
    to_norm = _scale_offset(batch, 2.0 / w, 2.0 / h, 1.0 / w - 1.0, 1.0 / h - 1.0, hard_to_easy)
    from_norm = torch.linalg.inv(to_norm)
    theta = (to_norm @ hard_to_easy @ from_norm)[:, :2].to(heatmaps.dtype)
    grid = F.affine_grid(theta, [batch, num_kp, h, w], align_corners=False)
    warped = F.grid_sample(heatmaps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    index = torch.as_tensor(flip_index, device=heatmaps.device)
    if len(index) != num_kp:
        raise ValueError(f"cannot mirror {num_kp} keypoint channels with a {len(index)}-keypoint flip index")
    mirrored = flipped.to(device=heatmaps.device, dtype=torch.bool).view(batch, 1, 1, 1)
    return torch.where(mirrored, warped[:, index], warped)
