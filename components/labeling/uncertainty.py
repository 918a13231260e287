"""How unsure the method is about each unlabeled person: the signal that says which images to label next.

With a training checkpoint TRS keeps two models besides the student: the EMA teacher and the
reviewer's best historical snapshot. Where they disagree on a person the method is unsure, and a
label there is worth more than one on a person it already gets right:

    disagreement = 1 - OKS(teacher's pose, reviewer's pose)

OKS is COCO's, with the keypoint set's sigmas and the person's box area as the scale, so the score
is in [0, 1] and means the same for any set. A model without those two (a registered version holds
only the student) is scored by what it alone can say:

    1 - (OKS(pose, pose of the mirrored crop mirrored back) + mean keypoint confidence) / 2

the flip inconsistency (a left/right confusion shows here) and the heatmap confidence (a flat peak
means the model does not know). Each person keeps the pose to offer as a pre-annotation: the
teacher's when there is one (the better of the two), else the model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.utils.data import DataLoader

from components.config import ExperimentConfig
from components.data.datasets import EvalPoseDataset
from components.data.records import PersonRecord
from components.evaluation.inference import decode_to_image, eval_mode, model_heatmaps
from components.heatmap_codec import flip_heatmaps
from components.keypoints import KeypointSet
from components.models import build_model

DISAGREEMENT = "teacher_reviewer_disagreement"
FLIP_AND_CONFIDENCE = "flip_inconsistency_and_confidence"


@dataclass(frozen=True)
class ScoringModels:
    """The networks a score is read from: the student always, teacher and reviewer when the checkpoint has them."""

    student: nn.Module
    teacher: nn.Module | None = None
    reviewer: nn.Module | None = None

    @property
    def method(self) -> str:
        return DISAGREEMENT if self.teacher is not None and self.reviewer is not None else FLIP_AND_CONFIDENCE


def scoring_models(state: dict[str, Any], cfg: ExperimentConfig) -> ScoringModels:
    """The student, teacher and first reviewer snapshot of a checkpoint state (eval mode, CPU)."""

    def network(weights: dict[str, torch.Tensor]) -> nn.Module:
        model = build_model(cfg)
        model.load_state_dict(weights)
        return model.eval()

    teacher = network(state["teacher"]) if state.get("teacher") else None
    snapshots = (state.get("reviewer") or {}).get("snapshots") or []
    reviewer = network(snapshots[0]["model"]) if snapshots else None
    return ScoringModels(network(state["student"]), teacher, reviewer)


@dataclass(frozen=True)
class PersonScore:
    record: PersonRecord
    score: float  # in [0, 1]: higher means more unsure
    parts: dict[str, float]  # what the score is made of
    keypoints: NDArray[np.float64]  # [K, 3] x, y in image pixels and confidence: the pre-annotation


def pose_oks(
    first: NDArray[np.float64], second: NDArray[np.float64], areas: NDArray[np.float64], sigmas: NDArray[np.float64]
) -> NDArray[np.float64]:
    """OKS `[N]` between two poses `[N, K, 2]` of the same people, whose areas `[N]` set the scale."""
    squared = np.sum((first - second) ** 2, axis=-1)
    variances = (2.0 * sigmas) ** 2
    return np.exp(-squared / (2.0 * (areas[:, None] + np.spacing(1)) * variances[None, :])).mean(axis=-1)


def _poses(
    model: nn.Module, images: torch.Tensor, batch: dict[str, Any], cfg: ExperimentConfig, flip: NDArray[np.int64] | None
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """Poses in image pixels and keypoint confidences; with `flip`, of the mirrored crops mirrored back."""
    if flip is None:
        heatmaps = model_heatmaps(model, images)
    else:
        heatmaps = flip_heatmaps(model_heatmaps(model, images.flip(-1)), flip)
    return decode_to_image(heatmaps, batch["center"].numpy(), batch["scale"].numpy(), cfg)


@torch.inference_mode()
def score_people(
    models: ScoringModels, records: Sequence[PersonRecord], cfg: ExperimentConfig, batch_size: int = 64
) -> list[PersonScore]:
    """Every person of `records` (unlabeled boxes), scored as the module doc says."""
    keypoint_set: KeypointSet = cfg.keypoints.keypoint_set()
    dataset = EvalPoseDataset("<unlabeled people>", ".", cfg, records=list(records), min_keypoints=0)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    sigmas = keypoint_set.oks_sigmas
    scores: list[PersonScore] = []
    offset = 0
    networks = [m for m in (models.student, models.teacher, models.reviewer) if m is not None]
    with ExitStack() as stack:
        for network in networks:
            stack.enter_context(eval_mode(network))
        for batch in loader:
            images = batch["image"]
            count = images.shape[0]
            people = dataset.records[offset : offset + count]
            offset += count
            areas = np.asarray([max(r.bbox[2] * r.bbox[3], 1.0) for r in people], dtype=np.float64)
            if models.teacher is not None and models.reviewer is not None:
                teacher, teacher_conf = _poses(models.teacher, images, batch, cfg, None)
                reviewer, _ = _poses(models.reviewer, images, batch, cfg, None)
                agreement = pose_oks(teacher, reviewer, areas, sigmas)
                values = 1.0 - agreement
                parts = [{"oks_teacher_reviewer": float(a)} for a in agreement]
                offered, confidence = teacher, teacher_conf
            else:
                plain, plain_conf = _poses(models.student, images, batch, cfg, None)
                mirrored, _ = _poses(models.student, images, batch, cfg, keypoint_set.flip_index)
                agreement = pose_oks(plain, mirrored, areas, sigmas)
                mean_confidence = np.clip(plain_conf.mean(axis=-1), 0.0, 1.0)
                values = 1.0 - 0.5 * (agreement + mean_confidence)
                parts = [{"oks_flip": float(a), "confidence": float(c)} for a, c in zip(agreement, mean_confidence)]
                offered, confidence = plain, plain_conf
            for index, record in enumerate(people):
                pose = np.concatenate([offered[index], confidence[index][:, None].astype(np.float64)], axis=-1)
                scores.append(PersonScore(record, float(values[index]), parts[index], pose))
    return scores
