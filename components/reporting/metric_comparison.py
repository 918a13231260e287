"""Challenger vs champion on every COCO summary metric, with the bar promotion has to clear.

Promotion compares AP alone (`decide_promotion`: challenger AP > champion AP + margin); the other
metrics say whether a win is broad or only on AP. With no champion the challenger's metrics stand
alone: the version is promoted by default, and its profile is still worth a look.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from components.reporting.canvas import CHALLENGER_COLOUR, CHAMPION_COLOUR, MARKER_COLOUR, new_figure

METRICS: tuple[str, ...] = ("AP", "AP50", "AP75", "APm", "APl", "AR")


def metric_comparison_figure(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None = None,
    margin: float = 0.0,
    challenger_label: str = "challenger",
    champion_label: str = "champion",
) -> Figure:
    """Grouped bars of METRICS; with a champion, a line over AP at champion AP + margin."""
    missing = [m for m in METRICS if m not in challenger]
    if missing:
        raise ValueError(f"metric comparison needs the challenger's {list(METRICS)}; missing {missing}")
    positions = np.arange(len(METRICS), dtype=np.float64)
    figure = new_figure(8, 4.2)
    axes = figure.add_subplot()
    width = 0.38 if champion is not None else 0.6
    offset = width / 2 if champion is not None else 0.0
    series = [(challenger, challenger_label, CHALLENGER_COLOUR, -offset)]
    if champion is not None:
        series.append((champion, champion_label, CHAMPION_COLOUR, offset))
    top = 0.0
    for values, label, colour, shift in series:
        heights = np.asarray([values.get(m, -1.0) for m in METRICS], dtype=np.float64)  # an old champion may lack some
        shown = np.maximum(heights, 0.0)  # pycocotools reports -1 for an area range with no people
        bars = axes.bar(positions + shift, shown, width, label=label, color=colour, gid=label)
        axes.bar_label(bars, labels=[f"{v:.3f}" if v >= 0 else "n/a" for v in heights], padding=2, fontsize=8)
        top = max(top, float(shown.max()))
    if champion is not None and "AP" in champion:
        bar = float(champion["AP"]) + margin
        top = max(top, bar)
        axes.hlines(
            bar,
            positions[0] - 0.5,
            positions[0] + 0.5,
            colors=MARKER_COLOUR,
            linestyles="--",
            linewidth=2,
            label=f"promotion bar: champion AP + margin {margin:g} = {bar:.3f}",
            gid="promotion_bar",
        )
        verdict = "clears" if float(challenger["AP"]) > bar else "does not clear"
        title = f"{challenger_label} vs {champion_label}: AP {challenger['AP']:.3f} {verdict} the bar {bar:.3f}"
    elif champion is not None:
        title = f"{challenger_label} vs {champion_label}: the champion has no AP, so no bar to clear"
    else:
        title = f"{challenger_label}: no champion to compare with (a first version is promoted without a margin)"
    axes.set_xticks(positions, METRICS)
    axes.set_ylim(0, min(1.05, top * 1.15 + 0.05))
    axes.set_ylabel("COCO keypoint metric (OKS)")
    axes.set_title(title)
    axes.legend(fontsize=8, loc="upper right")
    axes.grid(axis="y", alpha=0.3)
    return figure
