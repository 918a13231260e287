"""Crop geometry shared by datasets, training and decoding: one convention, written down once.

Coordinates are continuous pixel coordinates in which integer values are pixel *centres* (the
convention of `cv2.warpAffine`). A crop maps the padded person box onto the network input so that
the box centre lands on the input centre `((w - 1) / 2, (h - 1) / 2)` and the box width on `w`
pixels. Heatmap pixel `u` covers input pixels `[u * s, (u + 1) * s)` for stride `s`, so its centre
sits at input coordinate `(u + 0.5) * s - 0.5`; `input_to_heatmap` and `heatmap_to_input` convert.

Affine transforms are 2x3 float64 matrices acting on column vectors `[x, y, 1]`. The batched box and
crop functions (`boxes_to_centers_scales`, `crop_to_image`) take numpy arrays or torch tensors alike,
so the exported predictor (components/serving) runs this very arithmetic in its graph.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

Affine = NDArray[np.float64]
Points = TypeVar("Points", NDArray[np.float64], torch.Tensor)


def _float_array(values: ArrayLike | torch.Tensor) -> NDArray[np.float64] | torch.Tensor:
    """Tensors as they are (traceable), anything else as a float64 array."""
    return values if isinstance(values, torch.Tensor) else np.asarray(values, dtype=np.float64)


def box_to_center_scale(
    box_xywh: ArrayLike, aspect_ratio: float, padding: float = 1.25
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centre and padded (width, height) in pixels of a box widened or heightened to `aspect_ratio` (w/h)."""
    return boxes_to_centers_scales(np.asarray(box_xywh, dtype=np.float64), aspect_ratio, padding)


def boxes_to_centers_scales(boxes_xywh: Points, aspect_ratio: float, padding: float = 1.25) -> tuple[Points, Points]:
    """`box_to_center_scale` of boxes `[..., 4]`: centres and padded sizes `[..., 2]`.

    Widening to the aspect ratio is `w' = max(w, a * h)`, `h' = max(h, w / a)`: one of the two is
    kept, the other grows, with no branch (so it traces into a graph).
    """
    xp = torch if isinstance(boxes_xywh, torch.Tensor) else np
    x, y, w, h = (boxes_xywh[..., i] for i in range(4))
    centers = xp.stack([x + w * 0.5, y + h * 0.5], -1)
    scales = xp.stack([xp.maximum(w, h * aspect_ratio), xp.maximum(h, w / aspect_ratio)], -1) * padding
    return centers, scales


def crop_to_image(points: Points, centers: Points, scales: Points, output_size: tuple[int, int]) -> Points:
    """Crop-input pixels `[N, M, 2]` (or `[M, 2]` shared by all crops) -> image pixels, `[N, M, 2]`.

    The inverse of the rotation-free `crop_affine(center, scale, 0, output_size)` of each crop,
    written out so that it runs batched on arrays and tensors alike.
    """
    out_h, out_w = output_size
    half = _float_array([(out_w - 1) * 0.5, (out_h - 1) * 0.5])
    size = _float_array([float(out_w), float(out_h)])
    if isinstance(points, torch.Tensor):
        half, size = torch.as_tensor(half, dtype=points.dtype), torch.as_tensor(size, dtype=points.dtype)
    return centers[..., None, :] + (points - half) * (scales / size)[..., None, :]


def crop_affine(
    center: ArrayLike,
    scale: ArrayLike,
    rotation_deg: float,
    output_size: tuple[int, int],
) -> Affine:
    """Image -> crop transform. `scale` is the (w, h) region in image pixels, `output_size` is (h, w).

    Rotation is counter-clockwise in the image as seen on screen (positive angles turn the person
    anticlockwise in the crop), about the box centre.
    """
    out_h, out_w = output_size
    cx, cy = np.asarray(center, dtype=np.float64)
    sw, sh = np.asarray(scale, dtype=np.float64)
    zoom_x, zoom_y = out_w / sw, out_h / sh
    theta = math.radians(rotation_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    # translate centre to origin, rotate, zoom, move to the output centre
    rotate = np.array([[cos, sin], [-sin, cos]])
    linear = np.diag([zoom_x, zoom_y]) @ rotate
    offset = np.array([(out_w - 1) * 0.5, (out_h - 1) * 0.5]) - linear @ np.array([cx, cy])
    return np.hstack([linear, offset[:, None]])


def invert_affine(matrix: ArrayLike) -> Affine:
    m = np.asarray(matrix, dtype=np.float64)
    linear_inv = np.linalg.inv(m[:, :2])
    return np.hstack([linear_inv, (-linear_inv @ m[:, 2])[:, None]])


def compose_affine(outer: ArrayLike, inner: ArrayLike) -> Affine:
    """The transform that applies `inner` first, then `outer`."""
    a = np.vstack([np.asarray(outer, dtype=np.float64), [0.0, 0.0, 1.0]])
    b = np.vstack([np.asarray(inner, dtype=np.float64), [0.0, 0.0, 1.0]])
    return (a @ b)[:2]


def apply_affine(points: ArrayLike, matrix: ArrayLike) -> NDArray[np.float64]:
    """Transform points of shape (..., 2)."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def hflip_affine(width: int) -> Affine:
    """Mirror inside an image or crop `width` pixels wide (pixel centres: x -> width - 1 - x)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def input_to_heatmap(points: ArrayLike, stride: int) -> NDArray[np.float64]:
    return (np.asarray(points, dtype=np.float64) + 0.5) / stride - 0.5


def heatmap_to_input(points: ArrayLike, stride: int) -> NDArray[np.float64]:
    return (np.asarray(points, dtype=np.float64) + 0.5) * stride - 0.5


def input_affine_to_heatmap(matrix: ArrayLike, stride: int) -> Affine:
    """Express an input-frame affine (e.g. easy view -> hard view) in heatmap coordinates."""
    to_input = np.array([[stride, 0.0, 0.5 * stride - 0.5], [0.0, stride, 0.5 * stride - 0.5]])
    return compose_affine(invert_affine(to_input), compose_affine(matrix, to_input))
