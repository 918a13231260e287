"""The COCO person-keypoint definition shared by data, training and evaluation."""

from __future__ import annotations

import numpy as np

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

# 1-based limb pairs exactly as COCO's categories[].skeleton lists them.
SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14),
    (14, 12),
    (17, 15),
    (15, 13),
    (12, 13),
    (6, 12),
    (7, 13),
    (6, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (9, 11),
    (2, 3),
    (1, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (5, 7),
)

# 0-based (left, right) pairs swapped by a horizontal flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

# Permutation that maps keypoint i to its mirror image (identity for the nose).
FLIP_INDEX: np.ndarray = np.arange(NUM_KEYPOINTS)
for _left, _right in FLIP_PAIRS:
    FLIP_INDEX[_left], FLIP_INDEX[_right] = _right, _left

# Per-keypoint OKS constants from the COCO evaluation code (cocoeval.py).
OKS_SIGMAS: np.ndarray = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)

UPPER_BODY: tuple[int, ...] = tuple(range(11))
LOWER_BODY: tuple[int, ...] = tuple(range(11, 17))

PERSON_CATEGORY: dict = {
    "supercategory": "person",
    "id": 1,
    "name": "person",
    "keypoints": list(KEYPOINT_NAMES),
    "skeleton": [list(pair) for pair in SKELETON],
}
