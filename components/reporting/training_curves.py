"""Training curves: losses, schedules, pseudo-label confidence and the reviewer's checks, on shared steps.

Drawn from the training history (`TrainResult.history`, also saved in every checkpoint): rows logged
every `train.log_every` steps carry `loss/*`, `lr` and, once consistency runs, `loss/lambda_u` and
`loss/confident_fraction`; rows of reviewer checks carry `teacher/holdout_ap`, `reviewer/best_ap`
and `reviewer/snapshot_step`. Losses span decades, so they get a log axis of their own; the 0-1
schedules and fractions get theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray

from components.config import ExperimentConfig
from components.method import method_spec
from components.reporting.canvas import CHALLENGER_COLOUR, MARKER_COLOUR, new_figure

LOSS_TERMS: tuple[str, ...] = ("total", "sup", "sup_mfl", "cons_teacher", "cons_reviewer", "cons_mfl")
LAMBDA_U, CONFIDENT = "loss/lambda_u", "loss/confident_fraction"
TEACHER_AP, REVIEWER_AP, SNAPSHOT_STEP = "teacher/holdout_ap", "reviewer/best_ap", "reviewer/snapshot_step"


@dataclass(frozen=True)
class ScheduleMarks:
    """Steps where the run changes phase: labels only until `burn_in_end`, consistency ramped up until `rampup_end`."""

    burn_in_end: int | None = None
    rampup_end: int | None = None

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> ScheduleMarks:
        spec = method_spec(cfg)
        if not spec.has_teacher:  # labels only: no burn-in to end, no consistency to ramp up
            return cls()
        return cls(spec.burn_in_end, spec.burn_in_end + cfg.train.consistency.rampup_iters)


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rows = [row for row in history if key in row and "step" in row]
    return (
        np.asarray([row["step"] for row in rows], dtype=np.float64),
        np.asarray([row[key] for row in rows], dtype=np.float64),
    )


def _mark_phases(axes: Axes, marks: ScheduleMarks, label: bool) -> None:
    if marks.burn_in_end is None:
        return
    axes.axvline(
        marks.burn_in_end,
        color="black",
        linestyle=":",
        linewidth=1.2,
        gid="burn_in_end",
        label=f"burn-in ends (step {marks.burn_in_end})" if label else None,
    )
    if marks.rampup_end is not None and marks.rampup_end > marks.burn_in_end:
        axes.axvspan(
            marks.burn_in_end,
            marks.rampup_end,
            color="grey",
            alpha=0.15,
            gid="rampup",
            label=f"λu ramp-up (to step {marks.rampup_end})" if label else None,
        )


def _losses(axes: Axes, history: Sequence[Mapping[str, float]]) -> None:
    for term in LOSS_TERMS:
        steps, values = _series(history, f"loss/{term}")
        if not np.any(values > 0):
            continue  # a term that is off (no MFL, no reviewer yet) has nothing to show on a log axis
        axes.plot(
            steps,
            np.where(values > 0, values, np.nan),
            label=term,
            linewidth=2.0 if term == "total" else 1.2,
            color="black" if term == "total" else None,
            gid=f"loss/{term}",
        )
    axes.set_yscale("log")
    axes.set_ylabel("loss (log)")
    axes.set_title("Losses: labeled (sup) and consistency (cons) terms")


def _schedules(axes: Axes, history: Sequence[Mapping[str, float]]) -> None:
    loss_rows = [row for row in history if "loss/total" in row and "step" in row]
    if any(LAMBDA_U in row for row in loss_rows):  # not logged before consistency starts, when it is 0
        steps = np.asarray([row["step"] for row in loss_rows], dtype=np.float64)
        weights = np.asarray([row.get(LAMBDA_U, 0.0) for row in loss_rows], dtype=np.float64)
        axes.plot(steps, weights, color="#55a868", linewidth=1.5, label="λu (consistency weight)", gid=LAMBDA_U)
        axes.set_ylabel("λu")
    lr_axes = axes.twinx()
    steps, rates = _series(history, "lr")
    lr_axes.plot(steps, rates, color="#dd8452", linewidth=1.5, label="learning rate", gid="lr")
    lr_axes.set_ylabel("learning rate")
    lr_axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    handles, labels = axes.get_legend_handles_labels()
    more_handles, more_labels = lr_axes.get_legend_handles_labels()
    axes.legend(handles + more_handles, labels + more_labels, fontsize=8, loc="center right")
    axes.set_title("Schedules")


def _confidence(axes: Axes, history: Sequence[Mapping[str, float]]) -> None:
    steps, fractions = _series(history, CONFIDENT)
    axes.plot(steps, fractions, color="#8172b3", linewidth=1.5, gid=CONFIDENT)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("fraction")
    axes.set_title("Pseudo-labels: share of joints above the confidence threshold")


def _reviewer(axes: Axes, history: Sequence[Mapping[str, float]]) -> None:
    steps, teacher = _series(history, TEACHER_AP)
    axes.plot(steps, teacher, "o-", color=CHALLENGER_COLOUR, markersize=4, label="teacher at the check", gid=TEACHER_AP)
    check_steps, held = _series(history, REVIEWER_AP)
    if len(held):
        axes.plot(
            check_steps, held, drawstyle="steps-post", color="#937860", label="reviewer's snapshot", gid=REVIEWER_AP
        )
    snapshot_steps, snapshots = _series(history, SNAPSHOT_STEP)
    if len(snapshots):
        taken = np.isin(steps, snapshot_steps[snapshots == snapshot_steps])
        axes.plot(
            steps[taken], teacher[taken], "*", color="#937860", markersize=10, label="snapshot taken", gid="taken"
        )
        final_step = snapshots[-1]
        final_ap = teacher[steps == final_step]
        if len(final_ap):
            axes.plot(
                [final_step], [final_ap[0]], "*", color=MARKER_COLOUR, markersize=18, gid="chosen_snapshot", zorder=5
            )
            axes.annotate(
                f"reviewer's snapshot at the end:\nstep {final_step:.0f}, AP {final_ap[0]:.3f}",
                (final_step, final_ap[0]),
                xytext=(-16, 8),
                textcoords="offset points",
                ha="right",
                va="top",
                fontsize=8,
                color=MARKER_COLOUR,
            )
    axes.set_ylabel("held-out AP")
    axes.set_title("Reviewer checks: the teacher's AP on the held-out labeled images")
    axes.legend(fontsize=8, loc="lower right")


def training_curves_figure(
    history: Sequence[Mapping[str, float]], marks: ScheduleMarks = ScheduleMarks(), title: str = "Training"
) -> Figure:
    """One panel per story the history can tell (losses and schedules always; confidence and
    reviewer checks when the run had them), sharing the step axis."""
    if not any("loss/total" in row and "step" in row for row in history):
        raise ValueError("the training history has no logged losses (rows with 'step' and 'loss/total')")
    panels = [_losses, _schedules]
    if any(CONFIDENT in row for row in history):
        panels.append(_confidence)
    if any(TEACHER_AP in row for row in history):
        panels.append(_reviewer)
    figure = new_figure(10, 2.6 * len(panels) + 0.6)
    axes_list = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for index, (axes, draw) in enumerate(zip(axes_list, panels, strict=True)):
        _mark_phases(axes, marks, label=index == 0)
        draw(axes, history)
        axes.grid(alpha=0.3)
    axes_list[0].legend(fontsize=8, ncols=4, loc="lower left")
    axes_list[-1].set_xlabel("step")
    figure.suptitle(title)
    return figure
