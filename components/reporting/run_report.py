"""A run's figures, drawn after training from its history and its validation results.

The pipeline's register step logs them to MLflow beside the model (and keeps them in the run
folder); `trs-pose evaluate --checkpoint ... --plots DIR` draws the same set for any checkpoint.
Figures whose inputs a run lacks (no logged losses, no results file) are left out, not faked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

from components.config import ExperimentConfig
from components.evaluation.coco_eval import load_ground_truth
from components.evaluation.error_breakdown import keypoint_outcomes
from components.reporting.canvas import save_figure
from components.reporting.joint_errors import joint_errors_figure
from components.reporting.metric_comparison import metric_comparison_figure
from components.reporting.per_joint import per_joint_figure
from components.reporting.prediction_grid import prediction_grid_figure
from components.reporting.training_curves import ScheduleMarks, training_curves_figure

TRAINING_CURVES = "training_curves.png"
METRICS = "challenger_vs_champion.png"
PER_JOINT = "per_joint_accuracy.png"
JOINT_ERRORS = "joint_errors.png"
PREDICTIONS = "predictions_vs_truth.png"


@dataclass(frozen=True)
class EvaluatedModel:
    """A model's validation metrics and, when kept, its COCO keypoint results on the same set."""

    label: str
    metrics: Mapping[str, float]
    results: str | Path | Sequence[Mapping[str, Any]] | None = None


def draw_run_figures(
    out_dir: str | Path,
    challenger: EvaluatedModel,
    val_ann: str | Path | COCO,
    val_images: str | Path | None,
    *,
    history: Sequence[Mapping[str, float]] = (),
    cfg: ExperimentConfig | None = None,
    champion: EvaluatedModel | None = None,
    margin: float = 0.0,
) -> list[Path]:
    """Write the figures into `out_dir`; returns the files written, in a fixed order.

    `champion` is compared on the metrics, and per joint when its results are given (they must be
    on the same validation set). `cfg` places the burn-in and ramp-up marks and titles the curves.
    """
    out = Path(out_dir)
    written: list[Path] = []
    if any("loss/total" in row and "step" in row for row in history):
        marks = ScheduleMarks.from_config(cfg) if cfg is not None else ScheduleMarks()
        title = f"Training: {cfg.name} ({cfg.train.method})" if cfg is not None else "Training"
        written.append(save_figure(training_curves_figure(history, marks, title), out / TRAINING_CURVES))
    comparison = metric_comparison_figure(
        challenger.metrics,
        champion.metrics if champion is not None else None,
        margin,
        challenger.label,
        champion.label if champion is not None else "champion",
    )
    written.append(save_figure(comparison, out / METRICS))
    if challenger.results is None:
        return written
    ground_truth = load_ground_truth(val_ann)
    keypoints = cfg.keypoints.keypoint_set() if cfg is not None else None
    outcomes = keypoint_outcomes(ground_truth, challenger.results, keypoints)
    against = (
        keypoint_outcomes(ground_truth, champion.results, keypoints)
        if champion is not None and champion.results
        else None
    )
    written.append(save_figure(per_joint_figure(outcomes, against, challenger.label), out / PER_JOINT))
    written.append(save_figure(joint_errors_figure(outcomes, against, challenger.label), out / JOINT_ERRORS))
    if val_images is not None and outcomes.people:
        grid = prediction_grid_figure(outcomes.people, ground_truth, val_images, outcomes.keypoints)
        written.append(save_figure(grid, out / PREDICTIONS))
    return written


def draw_checkpoint_figures(
    checkpoint: str,
    metrics: Mapping[str, float],
    results: str | Path,
    val_ann: str | Path | COCO,
    val_images: str | Path | None,
    out_dir: str | Path,
) -> list[Path]:
    """`draw_run_figures` for a checkpoint file, directory or s3:// prefix (its latest): its own
    history and config, no champion."""
    from components.engine.checkpoint import latest_checkpoint, load_checkpoint
    from components.storage.s3 import is_s3_uri

    uri = checkpoint
    if Path(checkpoint).is_dir() or (is_s3_uri(checkpoint) and not checkpoint.endswith(".pt")):
        uri = latest_checkpoint(checkpoint) or checkpoint
    state = load_checkpoint(uri)
    cfg = ExperimentConfig.model_validate(state["config"])
    return draw_run_figures(
        out_dir,
        EvaluatedModel(f"step {state.get('step', '?')}", metrics, results),
        val_ann,
        val_images,
        history=list(state.get("history", [])),
        cfg=cfg,
    )
