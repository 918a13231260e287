"""Predictions beside the ground truth, for the worst and the best people of the validation set.

People are ranked by the OKS of the prediction matched to them (`error_breakdown.keypoint_outcomes`;
0 when nothing matched): the top row holds the worst, the bottom row the best. Each cell is the
person's box with some context; the truth is drawn in white, dashed, with hollow joints, the
prediction solid with filled joints in the side colours of `drawing.draw_poses` (left orange,
right blue), so a left/right inversion shows as colours on the wrong white joints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pycocotools.coco import COCO

from components.data.validation import load_rgb
from components.evaluation.drawing import limb_side
from components.evaluation.error_breakdown import PersonMatch
from components.keypoints import KeypointSet
from components.reporting.canvas import new_figure, side_colour

CONTEXT = 0.25  # box margin on each side, as a share of the box's larger side


def worst_and_best(people: Sequence[PersonMatch], count: int) -> tuple[list[PersonMatch], list[PersonMatch]]:
    """The `count // 2` people of lowest OKS (worst first) and the rest of `count` of highest (best first)."""
    ranked = sorted(people, key=lambda person: (person.oks, person.ann_id))
    worst_count = min(count // 2, len(ranked) // 2)  # with fewer people than count, half each
    worst = ranked[:worst_count]
    best = ranked[worst_count:][::-1][: count - worst_count]
    return worst, best


def _skeleton(
    axes: Axes, keypoints: NDArray[np.float64], shown: NDArray[np.bool_], truth: bool, keypoint_set: KeypointSet
) -> None:
    limbs = [limb for limb in keypoint_set.skeleton if shown[limb[0]] and shown[limb[1]]]
    colours = [side_colour(limb_side(keypoint_set, a, b)) for a, b in limbs]
    segments = [keypoints[list(limb), :2] for limb in limbs]
    if truth:
        axes.add_collection(
            LineCollection(segments, colors="white", linestyles="--", linewidths=1.6, gid="truth", zorder=2)
        )
        axes.scatter(
            keypoints[shown, 0],
            keypoints[shown, 1],
            s=28,
            facecolors="none",
            edgecolors="white",
            linewidths=1.4,
            zorder=3,
            gid="truth_joints",
        )
        return
    axes.add_collection(
        LineCollection(segments, colors=colours, linestyles="-", linewidths=2.0, gid="prediction", zorder=4)
    )
    joint_colours = [side_colour(side) for side, keep in zip(keypoint_set.sides, shown, strict=True) if keep]
    axes.scatter(keypoints[shown, 0], keypoints[shown, 1], s=14, c=joint_colours, zorder=5, gid="prediction_joints")


def _cell(
    axes: Axes,
    image: NDArray[np.uint8],
    annotation: Mapping[str, Any],
    person: PersonMatch,
    title: str,
    keypoint_set: KeypointSet,
) -> None:
    axes.imshow(image)
    k = keypoint_set.num_keypoints
    truth = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(k, 3)
    _skeleton(axes, truth, truth[:, 2] > 0, True, keypoint_set)
    if person.prediction is not None:
        predicted = np.asarray(person.prediction["keypoints"], dtype=np.float64).reshape(k, 3)
        _skeleton(axes, predicted, np.ones(k, dtype=bool), False, keypoint_set)
    x, y, w, h = (float(v) for v in annotation["bbox"])
    side = max(w, h)
    height, width = image.shape[:2]
    axes.set_xlim(max(0.0, x - CONTEXT * side), min(float(width), x + w + CONTEXT * side))
    axes.set_ylim(min(float(height), y + h + CONTEXT * side), max(0.0, y - CONTEXT * side))
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title, fontsize=9)
    axes.set_gid(f"person:{person.ann_id}")


def prediction_grid_figure(
    people: Sequence[PersonMatch],
    ground_truth: COCO,
    image_dir: str | Path,
    keypoint_set: KeypointSet,
    count: int = 12,
    columns: int = 6,
) -> Figure:
    """A grid of `count` people: worst first, then best; see the module doc for the styles."""
    worst, best = worst_and_best(people, count)
    chosen = [("worst", rank, p) for rank, p in enumerate(worst, 1)] + [
        ("best", rank, p) for rank, p in enumerate(best, 1)
    ]
    if not chosen:
        raise ValueError("no labeled people to draw")
    rows = -(-len(chosen) // columns)
    figure = new_figure(2.7 * columns, 3.3 * rows + 0.5)
    images: dict[int, NDArray[np.uint8]] = {}
    for index, (kind, rank, person) in enumerate(chosen):
        if person.image_id not in images:
            images[person.image_id] = load_rgb(Path(image_dir) / ground_truth.imgs[person.image_id]["file_name"])
        matched = f"OKS {person.oks:.2f}" if person.prediction is not None else "no prediction"
        title = f"{kind} {rank}: {matched}\nimage {person.image_id}, person {person.ann_id}"
        _cell(
            figure.add_subplot(rows, columns, index + 1),
            images[person.image_id],
            ground_truth.anns[person.ann_id],
            person,
            title,
            keypoint_set,
        )
    figure.suptitle(
        f"The {len(worst)} worst and {len(best)} best of {len(people)} validation people by OKS: "
        "truth white dashed, prediction solid (left orange, right blue)"
    )
    return figure
