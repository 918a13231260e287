"""The registered MLflow model: the whole top-down predictor as a pyfunc.

One request row is one image: `image` (encoded JPEG or PNG bytes; base64 in JSON) or `pixels` (an
RGB array `[H, W, 3]`), optional `boxes` (`[[x, y, w, h], ...]` in image pixels; none or empty means
the whole image is one person) and optional `scores` (one a box). In a batch, give every record the
same keys (`"boxes": []` for a whole-image row): a key missing from one record becomes NaN, which
MLflow's schema check refuses with a 400 before the model sees it. One answer row per image:
`keypoints` `[N, K, 3]` (x, y in image pixels, score; K and the names in the model's metadata
`trs_pose.keypoints`), `scores` (person scores), `boxes` and
`box_source` ("boxes" or "whole_image"). Parameter `flip_test` (default: the training config's
`eval.flip_test`) averages with the mirrored crop.

Bad input raises `MlflowException(INVALID_PARAMETER_VALUE)`, which the scoring server answers with
HTTP 400 and the message, which names the row, the input and the rule. MLflow drops columns the
signature does not name before the model sees them, so a request without `image` or `pixels` (say
`{"img": ...}`) is answered with a 400 that names the expected columns.

The model is logged from code (components/serving/model_code.py), not pickled.
"""

from __future__ import annotations

import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import AnyType, Array, ColSpec, ParamSchema, ParamSpec, Schema
from torch import nn

from components.config import ExperimentConfig
from components.serving.inputs import InputError, check_boxes, check_rgb, check_scores, decode_image, whole_image_box
from components.serving.predictor import TopDownPredictor
from components.serving.runtime import TorchRuntime, predict_people

STUDENT_ARTIFACT = "student"  # the checkpoint-format file ({"config", "student"}) inside the MLflow model
MODEL_CODE = Path(__file__).with_name("model_code.py")  # what MLflow runs to build the model
IMAGE_COLUMNS = ("image", "pixels")
EXPECTED_COLUMNS = (
    "expected columns: image (encoded JPEG or PNG, base64 in JSON) or pixels (RGB array [H, W, 3]), "
    "with optional boxes ([[x, y, w, h], ...]) and scores"
)
REQUIREMENTS = ("torch", "torchvision", "timm", "numpy", "pandas", "mlflow", "opencv-python-headless", "pydantic")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and bool(np.isnan(value)))


class PosePredictorModel(PythonModel):
    """Loads the student from the model's `student` artifact and answers image + boxes -> keypoints."""

    def load_context(self, context: Any) -> None:
        from components.engine.checkpoint import load_student

        network, cfg = load_student(context.artifacts[STUDENT_ARTIFACT])
        self.cfg: ExperimentConfig = cfg
        self.runtimes = {flip: TorchRuntime(TopDownPredictor(network, cfg, flip_test=flip)) for flip in (False, True)}

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        flip_test = bool((params or {}).get("flip_test", self.cfg.eval.flip_test))
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if not any(column in frame.columns for column in IMAGE_COLUMNS):
            given = ", ".join(map(str, frame.columns)) or "none that the model knows"
            raise MlflowException(
                f"no image column (columns given: {given}); {EXPECTED_COLUMNS}", error_code=INVALID_PARAMETER_VALUE
            )
        rows = []
        for index, row in enumerate(frame.to_dict(orient="records")):
            try:
                rows.append(self._predict_row(row, flip_test))
            except InputError as exc:
                raise MlflowException(f"row {index}: {exc}", error_code=INVALID_PARAMETER_VALUE) from None
        return pd.DataFrame(rows, columns=["keypoints", "scores", "boxes", "box_source"])

    def _predict_row(self, row: dict[str, Any], flip_test: bool) -> dict[str, Any]:
        image_bytes: Any = row.get("image")
        pixels: Any = row.get("pixels")
        if _missing(image_bytes) == _missing(pixels):
            raise InputError("image, pixels: rule 'give exactly one of image (encoded bytes) or pixels (RGB array)'")
        image = decode_image(image_bytes) if not _missing(image_bytes) else check_rgb(pixels, "pixels")
        raw_boxes: Any = row.get("boxes")
        given = not _missing(raw_boxes) and len(raw_boxes) > 0
        boxes = check_boxes(raw_boxes, image.shape) if given else whole_image_box(image.shape)
        raw_scores = row.get("scores")
        scores = check_scores(None if _missing(raw_scores) or not given else raw_scores, len(boxes))
        keypoints, person_scores = predict_people(self.runtimes[flip_test], image, boxes, scores, self.cfg)
        return {
            "keypoints": keypoints.astype(np.float64).round(3).tolist(),
            "scores": person_scores.round(4).tolist(),
            "boxes": boxes.astype(np.float64).tolist(),
            "box_source": "boxes" if given else "whole_image",
        }


def signature(flip_test_default: bool) -> ModelSignature:
    inputs = Schema(
        [
            ColSpec("binary", "image", required=False),
            # element types stay open so that integer pixels and boxes pass (MLflow will not cast long to
            # double); the predictor checks shapes and values and names what is wrong
            ColSpec(Array(AnyType()), "pixels", required=False),
            ColSpec(Array(Array(AnyType())), "boxes", required=False),
            ColSpec(Array(AnyType()), "scores", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec(Array(Array(Array("double"))), "keypoints"),
            ColSpec(Array("double"), "scores"),
            ColSpec(Array(Array("double")), "boxes"),
            ColSpec("string", "box_source"),
        ]
    )
    params = ParamSchema([ParamSpec("flip_test", "boolean", flip_test_default)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example(cfg: ExperimentConfig) -> pd.DataFrame:
    """A PNG the size of two crops with one box: a request as a client would send it."""
    import cv2

    height, width = cfg.input.image_size
    canvas = np.full((2 * height, 2 * width, 3), 96, np.uint8)
    encoded = cv2.imencode(".png", canvas)[1].tobytes()
    box = [float(width) * 0.5, float(height) * 0.5, float(width), float(height)]
    return pd.DataFrame({"image": [encoded], "boxes": [[box]], "scores": [[1.0]]})


def pip_requirements() -> list[str]:
    """Pinned to what is installed (listing them skips MLflow's inference, which loads the model)."""
    requirements = []
    for package in REQUIREMENTS:
        try:
            requirements.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return requirements


def log_pose_model(
    network: nn.Module, cfg: ExperimentConfig, name: str, *, model_id: str | None = None, step: int = 0
) -> Any:
    """Log the predictor of `network` as MLflow model `name` (into the logged model `model_id` when
    given, else the active run's); returns its ModelInfo."""
    state = {"config": cfg.model_dump(mode="json"), "student": {k: v.cpu() for k, v in network.state_dict().items()}}
    with tempfile.TemporaryDirectory() as scratch:
        student = Path(scratch) / "student.pth"
        torch.save(state, student)  # the checkpoint format, so `load_student` reads it
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(MODEL_CODE),
            artifacts={STUDENT_ARTIFACT: str(student)},
            signature=signature(cfg.eval.flip_test),
            input_example=input_example(cfg),
            code_paths=[str(Path(__file__).resolve().parents[1])],  # the `components` package
            pip_requirements=pip_requirements(),
            model_id=model_id,
            step=step,
            metadata={"trs_pose.keypoints": cfg.keypoints.keypoint_set().as_dict()},
        )
