"""Gaussian heatmap targets: one channel per keypoint, peak 1 at the keypoint's sub-pixel position.

The Gaussian is centred on the exact (unrounded) heatmap coordinate, so a decoder with sub-pixel
refinement can recover the label without the quantisation bias of integer-centred targets. It is
separable, so each heatmap is an outer product of a row and a column profile: no loop over pixels
or keypoints.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from components.data.geometry import input_to_heatmap


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
