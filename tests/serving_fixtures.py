"""One short training shared by every serving test (session-scoped: it is the slow part), and its ONNX exports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from components.config import ExperimentConfig
from components.data.split import SplitFiles
from components.engine.checkpoint import load_student
from components.engine.trainer import train
from components.serving.onnx_export import ONNX_FILE, ONNX_FLIP_FILE, export_onnx
from tests.tiny_coco import make_tiny_split, tiny_config

STILL = ["augment.rotation=0", "augment.half_body_prob=0", "model.backbone=resnet10t"]


@dataclass(frozen=True)
class TrainedStudent:
    checkpoint: str
    network: nn.Module
    cfg: ExperimentConfig
    split: SplitFiles


@dataclass(frozen=True)
class ExportedStudent:
    plain: Path
    flip_test: Path


@pytest.fixture(scope="session")
def trained_student(tmp_path_factory: pytest.TempPathFactory) -> TrainedStudent:
    """resnet10t at 64x48 trained for 80 iterations on stick figures: keypoint scores of 0.8 and more,
    so the parity checks compare confident keypoints, not noise."""
    root = tmp_path_factory.mktemp("serving-student")
    split = make_tiny_split(root, num_labeled=12, num_unlabeled=0, num_holdout=4)
    cfg = tiny_config(
        root / "checkpoints",
        "supervised",
        STILL,
        iterations=80,
        batch_size=8,
        lr=0.006,
        warmup_iters=10,
        foreground_weight=10.0,
    )
    torch.manual_seed(0)
    result = train(cfg, split, progress=False)
    network, trained_cfg = load_student(result.checkpoint_uri)
    return TrainedStudent(result.checkpoint_uri, network, trained_cfg, split)


@pytest.fixture(scope="session")
def exported_student(trained_student: TrainedStudent, tmp_path_factory: pytest.TempPathFactory) -> ExportedStudent:
    folder = tmp_path_factory.mktemp("serving-onnx")
    student, cfg = trained_student.network, trained_student.cfg
    return ExportedStudent(
        export_onnx(student, cfg, folder / ONNX_FILE), export_onnx(student, cfg, folder / ONNX_FLIP_FILE, True)
    )
