"""One call from a model and a COCO-format split to its keypoint AP: the pipeline's, the CLI's and the reviewer's."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pycocotools.coco import COCO
from torch import nn
from torch.utils.data import Dataset

from components.config import ExperimentConfig
from components.data.datasets import EvalPoseDataset
from components.evaluation.coco_eval import coco_keypoint_eval, load_ground_truth
from components.evaluation.inference import predict_dataset
from components.evaluation.nms import oks_nms

if TYPE_CHECKING:
    from components.serving.runtime import KeypointRuntime


def build_eval_dataset(
    ann_file: str | Path, image_dir: str | Path, cfg: ExperimentConfig, detections: str | Path | None = None
) -> Dataset:
    """The evaluation crops: ground-truth boxes (the protocol) or a detection-results file's boxes."""
    if detections is None:
        return EvalPoseDataset(ann_file, image_dir, cfg, seed=cfg.train.seed)
    return EvalPoseDataset.from_detections(detections, ann_file, image_dir, cfg, seed=cfg.train.seed)


def evaluate_model(
    model: nn.Module | None,
    ann_file: str | Path | Mapping[str, Any],
    image_dir: str | Path,
    cfg: ExperimentConfig,
    *,
    dataset: Dataset | None = None,
    detections: str | Path | None = None,
    flip_test: bool | None = None,
    ground_truth: COCO | None = None,
    results_out: str | Path | None = None,
    device: torch.device | str | None = None,
    num_workers: int | None = None,
    progress: bool = False,
    runtime: KeypointRuntime | None = None,
    warn_default_sigmas: bool = True,
) -> dict[str, float]:
    """COCO keypoint metrics (AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl) of `model` on a split.

    Boxes are the ground truth unless `detections` (or `cfg.eval.boxes`) names a detection file;
    poses from detector boxes go through OKS NMS (`cfg.eval.oks_nms_threshold`).
    Pass `dataset` and `ground_truth` to reuse them across calls (the reviewer scores snapshots on
    the same held-out split many times). Every image of the annotations is scored, so a person
    the boxes miss counts against recall. `results_out` keeps the COCO results JSON. A `runtime`
    (the whole predictor, e.g. its ONNX export; see components/serving) replaces `model`: it reads
    the images and crops itself, so it runs image by image on the dataset's person records.
    """
    if detections is None and cfg.eval.boxes != "ground_truth":
        detections = cfg.eval.boxes
    if dataset is None:
        if not isinstance(ann_file, (str, Path)):
            raise ValueError("building the evaluation dataset needs ann_file as a path; or pass dataset=")
        dataset = build_eval_dataset(ann_file, image_dir, cfg, detections)
    if runtime is not None:
        from components.serving.runtime import predict_records

        records = getattr(dataset, "records", None)
        if records is None:
            raise ValueError("a runtime evaluates person records; this dataset has no `records`")
        results: Sequence[Mapping[str, Any]] = predict_records(runtime, records, cfg, progress=progress)
    elif model is not None:
        results = predict_dataset(
            model, dataset, cfg, flip_test, device=device, num_workers=num_workers, progress=progress
        )
    else:
        raise ValueError("evaluate_model needs a model or a runtime")
    if _has_detector_boxes(dataset, detections) and cfg.eval.oks_nms_threshold is not None:
        results = oks_nms(results, cfg.eval.oks_nms_threshold, cfg.keypoints.keypoint_set().oks_sigmas)
    if results_out is not None:
        Path(results_out).parent.mkdir(parents=True, exist_ok=True)
        Path(results_out).write_text(json.dumps(results))
    gt = ground_truth if ground_truth is not None else load_ground_truth(ann_file)
    return coco_keypoint_eval(
        gt, results, keypoints=cfg.keypoints.keypoint_set(), warn_default_sigmas=warn_default_sigmas
    )


def _has_detector_boxes(dataset: Dataset, detections: str | Path | None) -> bool:
    """Detector boxes come from a detection file, or show as records without an annotation (ann_id -1)."""
    if detections is not None:
        return True
    records = getattr(dataset, "records", None) or []
    return any(int(record.ann_id) < 0 for record in records)
