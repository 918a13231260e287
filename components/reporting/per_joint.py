"""OKS-based accuracy per joint of the keypoint set, left and right side by side.

A keypoint's accuracy is the share of COCO's ten OKS thresholds (0.50, 0.55, ..., 0.95) that its
keypoint similarity to its own ground truth passes: the per-joint reading of how AP averages over
thresholds. Over the labeled keypoints of every matched person (`error_breakdown.keypoint_outcomes`).
Joints stay in the set's order, each mirror twin moved beside the first of its pair (COCO's order
already does that); a gap separates the groups.
"""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import NDArray

from components.evaluation.error_breakdown import KeypointOutcomes
from components.keypoints import KeypointSet
from components.reporting.canvas import new_figure, side_colour

OKS_THRESHOLDS: NDArray[np.float64] = np.linspace(0.5, 0.95, 10)


def joint_positions(keypoints: KeypointSet) -> NDArray[np.float64]:
    """x of each joint: one group a joint without a twin, one group a left/right pair (twins side by side)."""
    twin = keypoints.flip_index
    x = np.zeros(keypoints.num_keypoints)
    group = 0
    for i in range(keypoints.num_keypoints):
        if twin[i] < i:  # placed with its twin
            x[i] = x[twin[i]] + 1.0
            continue
        x[i] = group * 2.4
        group += 1
    return x


def accuracy_per_joint(outcomes: KeypointOutcomes) -> NDArray[np.float64]:
    """`[K]` mean share of OKS thresholds passed, NaN for a joint never labeled."""
    k = outcomes.keypoints.num_keypoints
    passed = (outcomes.similarity[:, None] >= OKS_THRESHOLDS[None, :]).mean(1)
    sums = np.bincount(outcomes.joint, weights=passed, minlength=k)
    counts = np.bincount(outcomes.joint, minlength=k)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def per_joint_figure(
    outcomes: KeypointOutcomes, champion: KeypointOutcomes | None = None, label: str = "challenger"
) -> Figure:
    """Bars per joint coloured by side; the champion's accuracy as black ticks where there is one."""
    accuracy = accuracy_per_joint(outcomes)
    keypoints = outcomes.keypoints
    x = joint_positions(keypoints)
    figure = new_figure(11, 4.4)
    axes = figure.add_subplot()
    axes.bar(
        x,
        np.nan_to_num(accuracy),
        0.9,
        color=[side_colour(side) for side in keypoints.sides],
        gid="accuracy",
        label=label,
    )
    for position, value in zip(x, accuracy, strict=True):
        if np.isfinite(value):
            axes.text(position, value + 0.01, f"{value:.2f}", ha="center", va="bottom", fontsize=7)
    handles: list[Artist] = [
        Patch(color=side_colour(side), label=f"{label}, {side}") for side in ("left", "right", "centre")
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
    axes.set_xticks(x, [name.replace("_", " ") for name in keypoints.names], rotation=45, ha="right")
    axes.set_ylim(0, 1.18)
    axes.set_ylabel("accuracy over OKS thresholds 0.50:0.95")
    people = sum(person.prediction is not None for person in outcomes.people)
    axes.set_title(f"Per-joint accuracy ({len(outcomes.joint)} labeled keypoints of {people} matched people)")
    axes.grid(axis="y", alpha=0.3)
    return figure
