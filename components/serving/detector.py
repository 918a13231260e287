"""People without boxes: a torchvision person detector (Faster R-CNN or RetinaNet) from a local weights file.

Weights cannot be fetched at run time (and need not be: a file is what a deployment ships), so the
detector is built without any download and loaded from a state dict, such as torchvision's own
COCO checkpoints. COCO's category 1 is the person.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from components.serving.detector_archs import DEFAULT_DETECTOR_ARCH, DetectorArch

COCO_PERSON_LABEL = 1
COCO_DETECTION_CLASSES = 91  # torchvision's COCO detectors: background + 90 category ids


class DetectorError(ValueError):
    """The detector weights cannot be used; the message names the file and why."""


def build_detector(arch: DetectorArch) -> nn.Module:
    """An untrained detector of `arch` with COCO's classes; nothing is downloaded."""
    from torchvision.models import detection

    builder: Callable[..., nn.Module] = getattr(detection, arch)
    # score filtering is ours (detect_people), so the model keeps every candidate
    keyword = "score_thresh" if arch.startswith("retinanet") else "box_score_thresh"
    return builder(weights=None, weights_backbone=None, num_classes=COCO_DETECTION_CLASSES, **{keyword: 0.0})


def load_detector(weights: str | Path, arch: DetectorArch = DEFAULT_DETECTOR_ARCH) -> nn.Module:
    """The detector of `arch` with the state dict in `weights`, in eval mode on the CPU."""
    detector = build_detector(arch)
    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise DetectorError(f"{weights}: not a readable state dict ({exc})") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # torchvision reference-script checkpoints wrap the weights
    try:
        detector.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DetectorError(f"{weights}: not {arch} weights ({first_line})") from exc
    return detector.eval()


def detect_people(
    detector: nn.Module, image_rgb: NDArray[np.uint8], score_threshold: float = 0.5
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Person boxes `[N, 4]` (x, y, w, h) scoring at least `score_threshold`, best first, and their scores."""
    return detect_batch(detector, [image_rgb], COCO_PERSON_LABEL, score_threshold)[0]


@torch.inference_mode()
def detect_batch(
    detector: nn.Module, images_rgb: list[NDArray[np.uint8]], label: int, score_threshold: float
) -> list[tuple[NDArray[np.float32], NDArray[np.float64]]]:
    """For each image, the boxes `[N, 4]` (x, y, w, h) of class `label` scoring at least
    `score_threshold`, best first, and their scores; one forward pass for the whole list."""
    tensors = [torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0 for image in images_rgb]
    found = []
    for output in detector(tensors):
        keep = (output["labels"] == label) & (output["scores"] >= score_threshold)
        xyxy = output["boxes"][keep].double().numpy().reshape(-1, 4)
        scores = output["scores"][keep].double().numpy()
        boxes = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        usable = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        order = np.argsort(-scores[usable], kind="stable")
        found.append((boxes[usable][order].astype(np.float32), scores[usable][order]))
    return found
