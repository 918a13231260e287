"""What a request may hold: an image (encoded bytes or an RGB array) and person boxes, checked.

Every rule breaks with an `InputError` whose message names the input and the rule, so the MLflow
scoring server can answer 400 and the CLI one line. Boxes may reach past the image edge (detector
boxes often do) but must overlap it and have a positive area.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


class InputError(ValueError):
    """A request input breaks a rule; the message names the input and the rule."""


def decode_image(data: bytes | bytearray | memoryview | str, name: str = "image") -> NDArray[np.uint8]:
    """RGB uint8 `[H, W, 3]` from encoded JPEG or PNG bytes (a base64 string is decoded first)."""
    import base64
    import binascii

    import cv2

    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"{name}: rule 'encoded JPEG or PNG bytes (base64 in JSON)': not base64 ({exc})") from exc
    buffer = np.frombuffer(bytes(data), dtype=np.uint8)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if bgr is None:
        raise InputError(f"{name}: rule 'encoded JPEG or PNG bytes': {buffer.size} bytes that do not decode")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def check_rgb(pixels: Any, name: str = "image") -> NDArray[np.uint8]:
    """An RGB array `[H, W, 3]` of whole numbers in 0..255, as uint8."""
    try:
        array = np.asarray(pixels)
        if array.dtype == object:  # nested lists from JSON come as arrays of arrays
            array = np.stack([np.stack(list(row)) for row in array])
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: rule 'RGB array [H, W, 3]': ragged or not numeric ({exc})") from exc
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] < 2 or array.shape[1] < 2:
        raise InputError(f"{name}: rule 'RGB array [H, W, 3], H and W at least 2': got shape {list(array.shape)}")
    if not np.issubdtype(array.dtype, np.number) or array.min() < 0 or array.max() > 255:
        raise InputError(f"{name}: rule 'RGB values 0..255': got {array.dtype} in [{array.min()}, {array.max()}]")
    return np.ascontiguousarray(array.astype(np.uint8))


def check_boxes(boxes: Any, image_shape: tuple[int, ...], name: str = "boxes") -> NDArray[np.float32]:
    """Boxes `[N, 4]` (x, y, w, h in image pixels) with positive sizes, each overlapping the image."""
    try:
        array = np.asarray([list(box) for box in boxes] if len(boxes) else np.zeros((0, 4)), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: rule '[[x, y, w, h], ...] numbers': {exc}") from exc
    if array.ndim != 2 or array.shape[1] != 4:
        raise InputError(f"{name}: rule '[[x, y, w, h], ...]': got shape {list(array.shape)}")
    height, width = image_shape[:2]
    for index, (x, y, w, h) in enumerate(array):
        if not np.all(np.isfinite([x, y, w, h])):
            raise InputError(f"{name}[{index}]: rule 'finite numbers': got {[x, y, w, h]}")
        if w <= 0 or h <= 0:
            raise InputError(f"{name}[{index}]: rule 'positive width and height': got w={w:g}, h={h:g}")
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise InputError(
                f"{name}[{index}]: rule 'box overlaps the {width}x{height} image': got [{x:g}, {y:g}, {w:g}, {h:g}]"
            )
    return array.astype(np.float32)


def check_scores(scores: Any, count: int, name: str = "scores") -> NDArray[np.float64]:
    """One finite score a box (none given: 1 each)."""
    if scores is None:
        return np.ones(count)
    try:
        array = np.asarray(list(scores), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: rule 'one number a box': {exc}") from exc
    if array.shape != (count,) or not np.all(np.isfinite(array)):
        raise InputError(f"{name}: rule 'one finite number a box': got {array.shape[0]} for {count} boxes")
    return array


def whole_image_box(image_shape: tuple[int, ...]) -> NDArray[np.float32]:
    """The one box of an image without boxes: the whole image is one person."""
    height, width = image_shape[:2]
    return np.array([[0.0, 0.0, float(width), float(height)]], dtype=np.float32)
