"""How each joint fails: the error-breakdown bins (good, jitter, inversion, swap, miss) per joint, stacked.

The bins are `error_breakdown`'s (Ronchi and Perona, ICCV 2017). With a champion its bar sits
beside the challenger's for every joint, hatched, so a change in kind of error shows where it
happens (an inversion fixed on the wrists, a new swap on the ankles).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from components.evaluation.error_breakdown import BINS, KeypointOutcomes
from components.reporting.canvas import new_figure
from components.reporting.per_joint import joint_positions

BIN_COLOURS: dict[str, str] = {
    "good": "#55a868",
    "jitter": "#ccb974",
    "inversion": "#dd8452",
    "swap": "#8172b3",
    "miss": "#c44e52",
}


def shares_per_joint(outcomes: KeypointOutcomes) -> NDArray[np.float64]:
    """`[K, len(BINS)]` share of each joint's labeled keypoints in each bin (rows of zeros if never labeled)."""
    counts = outcomes.counts_per_joint().astype(np.float64)
    return counts / np.maximum(counts.sum(1, keepdims=True), 1.0)


def joint_errors_figure(
    outcomes: KeypointOutcomes, champion: KeypointOutcomes | None = None, label: str = "challenger"
) -> Figure:
    """One stacked bar per joint (two with a champion: the challenger left, the champion right, hatched)."""
    sets = [(label, outcomes, "")] + ([("champion", champion, "//")] if champion is not None else [])
    width = 0.9 if champion is None else 0.45
    keypoints = outcomes.keypoints
    x = joint_positions(keypoints) * (1.0 if champion is None else 1.5)
    figure = new_figure(12, 4.8)
    axes = figure.add_subplot()
    for index, (name, data, hatch) in enumerate(sets):
        shares = shares_per_joint(data)
        shift = 0.0 if champion is None else (index - 0.5) * width
        bottom = np.zeros(keypoints.num_keypoints)
        for b, bin_name in enumerate(BINS):
            axes.bar(
                x + shift,
                shares[:, b],
                width,
                bottom=bottom,
                color=BIN_COLOURS[bin_name],
                hatch=hatch,
                edgecolor="white",
                linewidth=0.5,
                label=bin_name if index == 0 else None,
                gid=f"{name}/{bin_name}",
            )
            bottom += shares[:, b]
    axes.set_xticks(x, [n.replace("_", " ") for n in keypoints.names], rotation=45, ha="right")
    axes.set_ylim(0, 1.0)
    axes.set_ylabel("share of the joint's labeled keypoints")
    axes.legend(fontsize=8, ncols=len(BINS), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    against = " (left bar; champion right, hatched)" if champion is not None else ""
    axes.set_title(f"Keypoint errors per joint{against}", pad=28)
    return figure
