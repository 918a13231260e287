"""Runtimes that run the whole predictor: eager PyTorch or ONNX Runtime, one call signature.

Both take one RGB image and its checked boxes and return keypoints `[N, K, 3]` in image pixels;
`predict_people` adds the person scores the evaluation uses, so every front end (CLI, MLflow
model, benchmark) reports the same numbers whichever runtime it picked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from components.config import ExperimentConfig
from components.data.records import PersonRecord
from components.evaluation.inference import person_scores, result_records
from components.serving.predictor import TopDownPredictor

RuntimeName = Literal["torch", "onnx"]


class KeypointRuntime(Protocol):
    def __call__(self, image: NDArray[np.uint8], boxes: NDArray[np.float32]) -> NDArray[np.float32]:
        """Keypoints `[N, K, 3]` (x, y in image pixels, score) of `boxes` `[N, 4]` in `image` `[H, W, 3]`."""
        ...


class TorchRuntime:
    """The predictor in eager PyTorch, on `device`."""

    def __init__(self, predictor: TopDownPredictor, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.predictor = predictor.to(self.device).eval()
        self.num_keypoints = len(predictor.flip_index)

    @torch.inference_mode()
    def __call__(self, image: NDArray[np.uint8], boxes: NDArray[np.float32]) -> NDArray[np.float32]:
        if len(boxes) == 0:
            return np.zeros((0, self.num_keypoints, 3), dtype=np.float32)
        keypoints = self.predictor(
            torch.from_numpy(np.ascontiguousarray(image)).to(self.device),
            torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)).to(self.device),
        )
        return keypoints.float().cpu().numpy()


class OnnxRuntime:
    """An exported `model.onnx` (inputs `image`, `boxes`; output `keypoints`) in ONNX Runtime on the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.num_keypoints = int(self.session.get_outputs()[0].shape[1])

    def __call__(self, image: NDArray[np.uint8], boxes: NDArray[np.float32]) -> NDArray[np.float32]:
        if len(boxes) == 0:
            return np.zeros((0, self.num_keypoints, 3), dtype=np.float32)
        feeds = {"image": np.ascontiguousarray(image, dtype=np.uint8), "boxes": np.ascontiguousarray(boxes, np.float32)}
        return np.asarray(self.session.run(["keypoints"], feeds)[0], dtype=np.float32)


def predict_people(
    runtime: KeypointRuntime,
    image: NDArray[np.uint8],
    boxes: NDArray[np.float32],
    box_scores: NDArray[np.float64],
    cfg: ExperimentConfig,
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Keypoints `[N, K, 3]` and person scores `[N]` (box score times mean confident keypoint score)."""
    keypoints = runtime(image, boxes)
    scores = person_scores(keypoints[..., 2], box_scores, cfg.eval.keypoint_score_threshold)
    return keypoints, scores


def predict_records(
    runtime: KeypointRuntime, records: Sequence[PersonRecord], cfg: ExperimentConfig, progress: bool = False
) -> list[dict[str, Any]]:
    """COCO keypoint results of person records (an evaluation dataset's), one runtime call an image."""
    from tqdm.auto import tqdm

    from components.data.datasets import read_image

    by_image: dict[Path, list[PersonRecord]] = {}
    for record in records:
        by_image.setdefault(record.image_path, []).append(record)
    results: list[dict[str, Any]] = []
    for people in tqdm(by_image.values(), desc="predict", unit="image", disable=not progress, leave=False):
        image = read_image(people[0])
        boxes = np.stack([record.bbox for record in people]).astype(np.float32)
        box_scores = np.array([record.score for record in people], dtype=np.float64)
        keypoints, scores = predict_people(runtime, image, boxes, box_scores, cfg)
        image_ids = [record.image_id for record in people]
        results.extend(
            result_records(
                image_ids, keypoints[..., :2], keypoints[..., 2], scores, cfg.keypoints.keypoint_set().category_id
            )
        )
    return results
