"""OKS non-maximum suppression: one pose per person when a detector boxes the same person twice.

With ground-truth boxes every box is a distinct person, so the protocol does not use it; with
detector boxes, duplicate poses count as false positives in COCO AP. Poses are compared by OKS
with the keypoint set's sigmas; a pose's area is its keypoints' extent, the area COCO itself gives a result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from components.keypoints import COCO_PERSON

ResultT = TypeVar("ResultT", bound=Mapping[str, Any])


def pairwise_oks(
    keypoints: NDArray[np.float64], areas: NDArray[np.float64], sigmas: NDArray[np.float64]
) -> NDArray[np.float64]:
    """OKS `[N,N]` between poses `[N,K,2]` whose object areas are `[N]` (their mean is the scale)."""
    squared = np.sum((keypoints[:, None] - keypoints[None]) ** 2, axis=-1)
    scale = 0.5 * (areas[:, None] + areas[None]) + np.spacing(1)
    variances = (2.0 * sigmas) ** 2
    return np.exp(-squared / (2.0 * scale[..., None] * variances)).mean(axis=-1)


def keypoint_extent_areas(keypoints: NDArray[np.float64]) -> NDArray[np.float64]:
    """Area of each pose's keypoint bounding box `[N]`, as pycocotools assigns to keypoint results."""
    extent = keypoints.max(axis=1) - keypoints.min(axis=1)
    return extent[:, 0] * extent[:, 1]


def oks_nms(
    results: Sequence[ResultT], threshold: float = 0.9, sigmas: NDArray[np.float64] = COCO_PERSON.oks_sigmas
) -> list[ResultT]:
    """Keep, image by image and best score first, each pose whose OKS with every kept pose is <= threshold."""
    by_image: dict[Any, list[int]] = defaultdict(list)
    for index, record in enumerate(results):
        by_image[record["image_id"]].append(index)
    kept: list[int] = []
    for indices in by_image.values():
        scores = np.array([results[i]["score"] for i in indices], dtype=np.float64)
        order = [indices[i] for i in np.argsort(-scores, kind="stable")]
        triples = np.array([results[i]["keypoints"] for i in order], dtype=np.float64).reshape(len(order), -1, 3)
        points = triples[..., :2]
        overlap = pairwise_oks(points, keypoint_extent_areas(points), sigmas)
        suppressed = np.zeros(len(order), dtype=bool)
        for position, index in enumerate(order):
            if suppressed[position]:
                continue
            kept.append(index)
            suppressed |= overlap[position] > threshold
    return [results[i] for i in sorted(kept)]
