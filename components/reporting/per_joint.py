"""OKS-based accuracy per COCO joint, left and right side by side.

A keypoint's accuracy is the share of COCO's ten OKS thresholds (0.50, 0.55, ..., 0.95) that its
keypoint similarity to its own ground truth passes: the per-joint reading of how AP averages over
thresholds. Over the labeled keypoints of every matched person (`error_breakdown.keypoint_outcomes`).
Joints stay in COCO order, which already puts each left joint next to its right twin; a gap
separates the pairs.
"""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import NDArray

from components.evaluation.error_breakdown import KeypointOutcomes
from components.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from components.reporting.canvas import new_figure, side_colour

OKS_THRESHOLDS: NDArray[np.float64] = np.linspace(0.5, 0.95, 10)


def joint_positions() -> NDArray[np.float64]:
    """x of each joint in COCO order: the nose alone, then each left/right pair close together."""
    group = np.asarray([0 if i == 0 else (i + 1) // 2 for i in range(NUM_KEYPOINTS)], dtype=np.float64)
    within = np.asarray([0 if i == 0 else (i + 1) % 2 for i in range(NUM_KEYPOINTS)], dtype=np.float64)
    return group * 2.4 + within


def accuracy_per_joint(outcomes: KeypointOutcomes) -> NDArray[np.float64]:
    """`[K]` mean share of OKS thresholds passed, NaN for a joint never labeled."""
    passed = (outcomes.similarity[:, None] >= OKS_THRESHOLDS[None, :]).mean(1)
    sums = np.bincount(outcomes.joint, weights=passed, minlength=NUM_KEYPOINTS)
    counts = np.bincount(outcomes.joint, minlength=NUM_KEYPOINTS)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def per_joint_figure(
    outcomes: KeypointOutcomes, champion: KeypointOutcomes | None = None, label: str = "challenger"
) -> Figure:
    """Bars per joint coloured by side; the champion's accuracy as black ticks where there is one."""
    accuracy = accuracy_per_joint(outcomes)
    x = joint_positions()
    figure = new_figure(11, 4.4)
    axes = figure.add_subplot()
    axes.bar(
        x,
        np.nan_to_num(accuracy),
        0.9,
        color=[side_colour(name) for name in KEYPOINT_NAMES],
        gid="accuracy",
        label=label,
    )
    for position, value in zip(x, accuracy, strict=True):
        if np.isfinite(value):
            axes.text(position, value + 0.01, f"{value:.2f}", ha="center", va="bottom", fontsize=7)
    handles: list[Artist] = [
        Patch(color=side_colour(side), label=f"{label}, {'centre' if side == 'nose' else side.rstrip('_')}")
        for side in ("left_", "right_", "nose")
    ]
    if champion is not None:
        handles.append(
            axes.scatter(
                x,
                accuracy_per_joint(champion),
                marker="_",
                s=300,
                linewidths=2.5,
                color="black",
                label="champion",
                gid="champion",
                zorder=3,
            )
        )
    axes.legend(handles=handles, fontsize=8, ncols=len(handles), loc="upper left")
    axes.set_xticks(x, [name.replace("_", " ") for name in KEYPOINT_NAMES], rotation=45, ha="right")
    axes.set_ylim(0, 1.18)
    axes.set_ylabel("accuracy over OKS thresholds 0.50:0.95")
    people = sum(person.prediction is not None for person in outcomes.people)
    axes.set_title(f"Per-joint accuracy ({len(outcomes.joint)} labeled keypoints of {people} matched people)")
    axes.grid(axis="y", alpha=0.3)
    return figure
