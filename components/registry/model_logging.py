"""The student as an MLflow model: the whole top-down predictor (image + boxes in, keypoints out; see
components/serving/pyfunc.py), and its ONNX export logged beside it. `log_student` is the one entry point."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from torch import nn

from components.config import ExperimentConfig
from components.registry.mlflow_client import MlflowClientLike

MODEL_ARTIFACT = "student"
ONNX_ARTIFACT_DIR = "student-onnx"  # run artifact folder of the version's model.onnx


class LoggedStudent(NamedTuple):
    model_id: str  # a registered version points at `models:/<id>`
    onnx_uri: str | None  # `runs:/<run>/student-onnx/model.onnx`; None with registry.onnx false


def log_student(
    client: MlflowClientLike, run_id: str, student: nn.Module, cfg: ExperimentConfig, step: int = 0
) -> LoggedStudent:
    """Log the predictor of `student` into `run_id` as MLflow model `student`, and (unless
    registry.onnx is false) its `model.onnx` as a run artifact beside it."""
    from mlflow.entities import LoggedModelOutput

    from components.serving.onnx_export import ONNX_FILE, export_onnx
    from components.serving.pyfunc import log_pose_model

    network = copy.deepcopy(student).cpu().eval()  # the caller's model stays as it is
    # Created here so that the model lands in the run's experiment, not the fluent API's default one.
    run = client.get_run(run_id)
    model_id = client.create_logged_model(
        run.info.experiment_id, name=MODEL_ARTIFACT, source_run_id=run_id, params=run.data.params
    ).model_id
    with _fluent_api_pointed_at(client.tracking_uri):
        log_pose_model(network, cfg, MODEL_ARTIFACT, model_id=model_id, step=step)
    client.log_outputs(run_id, models=[LoggedModelOutput(model_id, step=step)])
    if not cfg.registry.onnx:
        return LoggedStudent(model_id, None)
    with tempfile.TemporaryDirectory() as scratch:
        client.log_artifact(run_id, str(export_onnx(network, cfg, Path(scratch) / ONNX_FILE)), ONNX_ARTIFACT_DIR)
    return LoggedStudent(model_id, f"runs:/{run_id}/{ONNX_ARTIFACT_DIR}/{ONNX_FILE}")


@contextmanager
def _fluent_api_pointed_at(tracking_uri: str) -> Iterator[None]:
    """MLflow has no client method that saves a model in a flavor's format: `mlflow.<flavor>.log_model`
    is fluent only and reads the process-wide tracking URI. Point that URI at `tracking_uri` for the
    block, then restore what was there (the model id is passed explicitly)."""
    import mlflow

    previous_tracking, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)
