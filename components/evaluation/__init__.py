"""Evaluation: heatmap decoding, top-down inference, COCO keypoint AP, and pose drawing."""

from components.evaluation.coco_eval import METRIC_NAMES, ResultsError, coco_keypoint_eval
from components.evaluation.evaluate import evaluate_model
from components.evaluation.inference import predict_boxes, predict_dataset
from components.heatmap_codec import decode_heatmaps, flip_heatmaps

__all__ = [
    "METRIC_NAMES",
    "ResultsError",
    "coco_keypoint_eval",
    "decode_heatmaps",
    "evaluate_model",
    "flip_heatmaps",
    "predict_boxes",
    "predict_dataset",
]
