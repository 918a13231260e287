"""Poses drawn on images for `trs-pose predict`; the run figures (components/reporting) share its colours.

Left limbs are drawn in one colour, right limbs in another and the centre line in a third, so a
left/right swap (the most common pose error) is visible at a glance.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from components.keypoints import COCO_PERSON, KeypointSet, Side

LEFT_COLOUR = (255, 140, 0)  # RGB orange
RIGHT_COLOUR = (30, 144, 255)  # RGB blue
CENTRE_COLOUR = (50, 205, 50)  # RGB green
BOX_COLOUR = (255, 255, 255)


SIDE_COLOURS: dict[Side, tuple[int, int, int]] = {"left": LEFT_COLOUR, "right": RIGHT_COLOUR, "centre": CENTRE_COLOUR}


def limb_side(keypoints: KeypointSet, first: int, second: int) -> Side:
    """A limb between two joints of one side has that side; any other limb is the centre's."""
    a, b = keypoints.sides[first], keypoints.sides[second]
    return a if a == b else "centre"


def draw_poses(
    image_rgb: NDArray[np.uint8],
    keypoints: ArrayLike,
    threshold: float = 0.2,
    boxes_xywh: ArrayLike | None = None,
    keypoint_set: KeypointSet = COCO_PERSON,
) -> NDArray[np.uint8]:
    """A copy of `image_rgb` (HxWx3 uint8) with skeletons of `keypoints` `[N,K,3]` (x, y, confidence).

    Keypoints with confidence at or below `threshold` and limbs touching one are left out; for
    ground truth pass COCO's visibility flags as the confidence with `threshold=0`. Limbs and
    colours come from `keypoint_set` (its skeleton, and the sides of its flip pairs).
    """
    image = np.ascontiguousarray(np.asarray(image_rgb, dtype=np.uint8)).copy()
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"draw_poses needs an HxWx3 RGB image, got shape {image.shape}")
    people = np.asarray(keypoints, dtype=np.float64).reshape(-1, keypoint_set.num_keypoints, 3)
    size = max(image.shape[:2])
    thickness = max(1, round(size / 320))
    radius = thickness + 1
    if boxes_xywh is not None:
        for x, y, w, h in np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4):
            cv2.rectangle(image, (round(x), round(y)), (round(x + w), round(y + h)), BOX_COLOUR, thickness, cv2.LINE_AA)
    for person in people:
        shown = person[:, 2] > threshold
        for a, b in keypoint_set.skeleton:
            if shown[a] and shown[b]:
                start = (round(person[a, 0]), round(person[a, 1]))
                end = (round(person[b, 0]), round(person[b, 1]))
                colour = SIDE_COLOURS[limb_side(keypoint_set, a, b)]
                cv2.line(image, start, end, colour, thickness, cv2.LINE_AA)
        for index in np.flatnonzero(shown):
            centre = (round(person[index, 0]), round(person[index, 1]))
            cv2.circle(image, centre, radius, SIDE_COLOURS[keypoint_set.sides[index]], -1, cv2.LINE_AA)
    return image
