"""The semi-supervised benchmark at a glance: AP per variant with its seed spread, and paired differences.

`runs` is benchmarks/ssl_gain.py's results.json `runs`: variant -> seed (a string) -> metrics with
"AP". Left: each seed's AP as a dot, the mean as a tick on a band of ± the sample standard deviation. Right:
for each variant, its AP minus the reference's (TRS) on the same seed, which removes the
labeled-subset spread that the left panel carries; a variant left of zero on every seed is worse.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from components.reporting.canvas import CHALLENGER_COLOUR, MARKER_COLOUR, new_figure

Runs = Mapping[str, Mapping[str, Mapping[str, float]]]
SEED_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def paired_differences(runs: Runs, variant: str, reference: str) -> dict[str, float]:
    """AP points (x100) of `variant` minus `reference`, per seed both have."""
    mine, theirs = runs.get(variant, {}), runs.get(reference, {})
    return {seed: 100 * (mine[seed]["AP"] - theirs[seed]["AP"]) for seed in mine if seed in theirs}


def variant_comparison_figure(
    runs: Runs, variants: Sequence[str] | None = None, reference: str = "trs", subtitle: str = ""
) -> Figure:
    """Two panels sharing the variant axis, variants top to bottom in the given (or the file's) order."""
    names = [v for v in (variants if variants is not None else list(runs)) if runs.get(v)]
    if not names:
        raise ValueError("no variant with any run to draw")
    seeds = sorted({seed for v in names for seed in runs[v]}, key=int)
    y = np.arange(len(names), dtype=np.float64)[::-1]
    figure = new_figure(12, 0.55 * len(names) + 2.0)
    ap_axes, diff_axes = figure.subplots(1, 2, sharey=True)
    for row, name in zip(y, names, strict=True):
        values = [100 * runs[name][s]["AP"] for s in seeds if s in runs[name]]
        mean = statistics.fmean(values)
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        colour = MARKER_COLOUR if name == reference else CHALLENGER_COLOUR
        ap_axes.hlines(row, mean - spread, mean + spread, color=colour, linewidth=6, alpha=0.35, gid=f"spread:{name}")
        ap_axes.plot([mean], [row], "|", color=colour, markersize=18, mew=2.5, gid=f"mean:{name}")
        ap_axes.annotate(
            f"{mean:.1f} ± {spread:.1f}" if len(values) > 1 else f"{mean:.1f} (1 seed)",
            (max(values + [mean + spread]), row),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
        differences = paired_differences(runs, name, reference)
        if name != reference and differences:
            diff_axes.plot(
                [statistics.fmean(differences.values())],
                [row],
                "|",
                color="black",
                markersize=16,
                mew=2,
                gid=f"mean_diff:{name}",
            )
    for index, seed in enumerate(seeds):
        marker = SEED_MARKERS[index % len(SEED_MARKERS)]
        rows = [(row, name) for row, name in zip(y, names, strict=True) if seed in runs[name]]
        ap_axes.scatter(
            [100 * runs[name][seed]["AP"] for _, name in rows],
            [row for row, _ in rows],
            marker=marker,
            color="black",
            s=22,
            label=f"seed {seed}",
            gid=f"seed:{seed}",
            zorder=3,
        )
        by_variant = {name: paired_differences(runs, name, reference) for _, name in rows if name != reference}
        paired = [(row, by_variant[name][seed]) for row, name in rows if seed in by_variant.get(name, {})]
        diff_axes.scatter(
            [d for _, d in paired],
            [row for row, _ in paired],
            marker=marker,
            color="black",
            s=22,
            gid=f"paired:{seed}",
            zorder=3,
        )
    diff_axes.axvline(0.0, color=MARKER_COLOUR, linewidth=1.2)
    ap_axes.set_yticks(y, names)
    ap_axes.set_ylim(-0.6, len(names) - 0.4)
    ap_axes.margins(x=0.22)  # room for the mean ± std labels
    diff_axes.margins(x=0.1)
    ap_axes.set_xlabel("AP (points), mean ± sample std over seeds")
    ap_axes.set_title("AP per variant")
    ap_axes.legend(fontsize=8, loc="best")
    diff_axes.set_xlabel(f"AP - {reference} AP on the same seed (points); bar: mean")
    diff_axes.set_title(f"Paired difference to {reference}")
    for axes in (ap_axes, diff_axes):
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle(f"Semi-supervised gain{': ' + subtitle if subtitle else ''}", fontsize=10)
    return figure
