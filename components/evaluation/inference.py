"""Top-down inference: person crops -> heatmaps -> keypoints in image pixels -> COCO result records.

The crop of each person is the rotation-free `crop_affine(center, scale)` of the datasets, so its
inverse carries decoded coordinates back to the image. Everything after the forward pass works
on whole batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from components.config import ExperimentConfig
from components.data.datasets import loader_worker_init
from components.data.geometry import crop_to_image, heatmap_to_input
from components.data.transforms import base_view, to_tensor, warp
from components.heatmap_codec import decode_heatmaps, flip_heatmaps


def model_heatmaps(
    model: nn.Module, images: torch.Tensor, flip_index: NDArray[np.int64] | torch.Tensor | None = None
) -> torch.Tensor:
    """Main-head heatmaps `[B,K,h,w]`; with a `flip_index` (flip test: the keypoint set's permutation),
    averaged with those of the mirrored crops."""
    heatmaps = _main_heatmaps(model(images))
    if flip_index is not None:
        mirrored = _main_heatmaps(model(images.flip(-1)))
        if images.shape[-1] % heatmaps.shape[-1] != 0:
            raise ValueError(
                f"flip test needs the input width ({images.shape[-1]}) to be a multiple of the heatmap width "
                f"({heatmaps.shape[-1]}), or mirrored heatmaps do not line up"
            )
        heatmaps = 0.5 * (heatmaps + flip_heatmaps(mirrored, flip_index))
    return heatmaps


def crops_to_image(
    points: ArrayLike, centers: ArrayLike, scales: ArrayLike, input_size: tuple[int, int]
) -> NDArray[np.float64]:
    """Crop-input pixel coordinates `[B,K,2]` back to image pixels, through each crop's inverse affine."""
    return np.asarray(
        crop_to_image(
            np.asarray(points, dtype=np.float64),
            np.asarray(centers, dtype=np.float64).reshape(-1, 2),
            np.asarray(scales, dtype=np.float64).reshape(-1, 2),
            input_size,
        )
    )


def decode_to_image(
    heatmaps: torch.Tensor, centers: ArrayLike, scales: ArrayLike, cfg: ExperimentConfig
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """Keypoints `[B,K,2]` in image pixels and their confidences `[B,K]` from crop heatmaps."""
    expected = tuple(cfg.input.heatmap_size)
    if tuple(heatmaps.shape[-2:]) != expected:
        raise ValueError(
            f"heatmaps are {tuple(heatmaps.shape[-2:])} but input.image_size {tuple(cfg.input.image_size)} with "
            f"stride {cfg.input.heatmap_stride} means {expected}; the model and config disagree"
        )
    # decode where the heatmaps are (the GPU, usually): only [B,K,2] coordinates cross to the host
    coords, maxvals = decode_heatmaps(heatmaps.float(), cfg.eval.decoder, blur_sigma=cfg.input.sigma)
    input_points = heatmap_to_input(coords.cpu().numpy(), cfg.input.heatmap_stride)
    return crops_to_image(input_points, centers, scales, cfg.input.image_size), maxvals.cpu().numpy()


def person_scores(maxvals: ArrayLike, box_scores: ArrayLike, threshold: float) -> NDArray[np.float64]:
    """Box score times the mean confidence of the keypoints above `threshold` (0 when none is)."""
    maxvals = np.asarray(maxvals, dtype=np.float64)
    confident = maxvals > threshold
    counts = confident.sum(axis=-1)
    mean_confidence = np.where(counts > 0, (maxvals * confident).sum(axis=-1) / np.maximum(counts, 1), 0.0)
    return np.asarray(box_scores, dtype=np.float64) * mean_confidence


def result_records(
    image_ids: ArrayLike, keypoints: ArrayLike, maxvals: ArrayLike, scores: ArrayLike, category_id: int
) -> list[dict[str, Any]]:
    """COCO keypoint results: `keypoints` as flat (x, y, confidence) triples, one record a person."""
    triples = np.concatenate([np.asarray(keypoints, np.float64), np.asarray(maxvals, np.float64)[..., None]], axis=-1)
    flat = triples.reshape(len(triples), -1).round(3).tolist()
    return [
        {"image_id": int(image_id), "category_id": category_id, "keypoints": kps, "score": float(score)}
        for image_id, kps, score in zip(np.asarray(image_ids).tolist(), flat, np.asarray(scores).tolist(), strict=True)
    ]


@torch.inference_mode()
def predict_dataset(
    model: nn.Module,
    dataset: Dataset,
    cfg: ExperimentConfig,
    flip_test: bool | None = None,
    *,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """COCO keypoint results for every person of an EvalPoseDataset-style dataset.

    Items need `image`, `center`, `scale`, `image_id` and `score`. `flip_test`, `batch_size` and
    `num_workers` default to `cfg.eval`; `device` to the model's, and a model elsewhere is moved
    there (a checkpoint loads on the CPU). The model runs in eval mode and is handed back in the
    mode it came in (the trainer scores its teacher mid-run).
    """
    flip_test = cfg.eval.flip_test if flip_test is None else flip_test
    keypoints_set = cfg.keypoints.keypoint_set()
    flip_index = keypoints_set.flip_index if flip_test else None
    device = torch.device(device) if device is not None else _model_device(model)
    if _model_device(model) != device:
        model.to(device)
    loader = DataLoader(
        dataset,
        batch_size=batch_size or cfg.eval.batch_size,
        shuffle=False,
        num_workers=cfg.eval.num_workers if num_workers is None else num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=loader_worker_init,
    )
    results: list[dict[str, Any]] = []
    with eval_mode(model):
        for batch in tqdm(loader, desc="predict", unit="batch", disable=not progress, leave=False):
            heatmaps = model_heatmaps(model, batch["image"].to(device, non_blocking=True), flip_index)
            keypoints, maxvals = decode_to_image(heatmaps, batch["center"].numpy(), batch["scale"].numpy(), cfg)
            scores = person_scores(maxvals, batch["score"].numpy(), cfg.eval.keypoint_score_threshold)
            image_ids = batch["image_id"].numpy()
            results.extend(result_records(image_ids, keypoints, maxvals, scores, keypoints_set.category_id))
    return results


def crop_people(
    image_rgb: NDArray[np.uint8], boxes_xywh: ArrayLike, cfg: ExperimentConfig
) -> tuple[torch.Tensor, NDArray[np.float64], NDArray[np.float64]]:
    """Normalised network inputs `[N,3,H,W]`, centres and scales for person boxes in one RGB image."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    if np.any(boxes[:, 2:] <= 0):
        raise ValueError("every box needs a positive width and height (boxes are [x, y, w, h])")
    size = cfg.input.image_size
    views = [base_view(box, cfg.input.aspect_ratio, cfg.input.box_padding) for box in boxes]
    if not views:
        return torch.empty(0, 3, *size), np.zeros((0, 2)), np.zeros((0, 2))
    inputs = torch.stack([to_tensor(warp(image_rgb, view.affine(size), size)) for view in views])
    return inputs, np.stack([view.center for view in views]), np.stack([view.scale for view in views])


@torch.inference_mode()
def predict_boxes(
    model: nn.Module,
    image_rgb: NDArray[np.uint8],
    boxes_xywh: ArrayLike,
    cfg: ExperimentConfig,
    box_scores: Sequence[float] | None = None,
    flip_test: bool | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Keypoints `[N,K,3]` (x, y, confidence in image pixels) and person scores `[N]` for boxes in one image."""
    flip_test = cfg.eval.flip_test if flip_test is None else flip_test
    keypoint_set = cfg.keypoints.keypoint_set()
    flip_index = keypoint_set.flip_index if flip_test else None
    inputs, centers, scales = crop_people(image_rgb, boxes_xywh, cfg)
    count = len(inputs)
    scores_in = np.ones(count) if box_scores is None else np.asarray(box_scores, dtype=np.float64)
    if count == 0:
        return np.zeros((0, keypoint_set.num_keypoints, 3)), np.zeros(0)
    device = _model_device(model)
    keypoints, maxvals = [], []
    with eval_mode(model):
        for start in range(0, count, cfg.eval.batch_size):
            stop = start + cfg.eval.batch_size
            heatmaps = model_heatmaps(model, inputs[start:stop].to(device), flip_index)
            points, confidences = decode_to_image(heatmaps, centers[start:stop], scales[start:stop], cfg)
            keypoints.append(points)
            maxvals.append(confidences)
    points, confidences = np.concatenate(keypoints), np.concatenate(maxvals)
    scores = person_scores(confidences, scores_in, cfg.eval.keypoint_score_threshold)
    return np.concatenate([points, confidences[..., None]], axis=-1), scores


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Inference mode for the block (batch-norm statistics frozen), then the caller's mode again."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _main_heatmaps(output: Any) -> torch.Tensor:
    """PoseNet returns PoseOutput(heatmaps, aux); plain tensors are accepted for simple models."""
    return output.heatmaps if hasattr(output, "heatmaps") else output


def _model_device(model: nn.Module) -> torch.device:
    first: Iterator[torch.Tensor] = iter(model.parameters())
    parameter = next(first, None)
    return parameter.device if parameter is not None else torch.device("cpu")
