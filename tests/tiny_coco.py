"""A few stick-figure people in COCO format, written in a test's tmp dir (trainer, resume, DDP tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from components.config import ExperimentConfig, load_config
from components.data.split import SplitFiles
from components.keypoints import COCO_PERSON, COCO_SKELETON

# COCO keypoint order, (x, y) as fractions of the person box; the person faces the camera
TEMPLATE = np.array(
    [
        [0.50, 0.08],
        [0.55, 0.05],
        [0.45, 0.05],
        [0.60, 0.07],
        [0.40, 0.07],
        [0.70, 0.22],
        [0.30, 0.22],
        [0.80, 0.38],
        [0.20, 0.38],
        [0.85, 0.52],
        [0.15, 0.52],
        [0.62, 0.55],
        [0.38, 0.55],
        [0.64, 0.75],
        [0.36, 0.75],
        [0.65, 0.95],
        [0.35, 0.95],
    ]
)


SKELETON_ZERO_BASED = [(a - 1, b - 1) for a, b in COCO_SKELETON]  # components.keypoints keeps COCO's 1-based limbs


def _person(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[float]]:
    box_w, box_h = width * rng.uniform(0.45, 0.7), height * rng.uniform(0.7, 0.9)
    x0, y0 = rng.uniform(0, width - box_w), rng.uniform(0, height - box_h)
    points = TEMPLATE + rng.normal(0.0, 0.03, TEMPLATE.shape)
    xy = np.stack([x0 + points[:, 0] * box_w, y0 + points[:, 1] * box_h], axis=1)
    return xy, [float(x0), float(y0), float(box_w), float(box_h)]


def person_annotation(
    ann_id: int, image_id: int, keypoints: list[float], bbox: list[float], area: float
) -> dict[str, Any]:
    """One COCO person record; `num_keypoints` counts the labeled joints of the flat [x, y, v] list."""
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": COCO_PERSON.coco_category()["id"],
        "keypoints": keypoints,
        "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
        "area": area,
        "bbox": bbox,
        "iscrowd": 0,
    }


def write_coco(root: Path, num_images: int, seed: int, size: tuple[int, int] = (64, 48)) -> dict[str, Any]:
    """`num_images` images of one person each under root/images; returns the labeled COCO dict."""
    rng = np.random.default_rng(seed)
    height, width = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        canvas = np.full((height, width, 3), rng.integers(40, 90), np.uint8)
        xy, box = _person(rng, width, height)
        for limb, (a, b) in enumerate(SKELETON_ZERO_BASED):
            colour = tuple(int(c) for c in (60 + 11 * limb % 190, 250 - 13 * limb % 200, 90 + 29 * limb % 160))
            cv2.line(canvas, tuple(np.round(xy[a]).astype(int)), tuple(np.round(xy[b]).astype(int)), colour, 2)
        name = f"{image_id:06d}.jpg"
        cv2.imwrite(str(root / "images" / name), canvas)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        keypoints = np.concatenate([xy, np.full((17, 1), 2.0)], axis=1)
        flat = [round(float(v), 2) for v in keypoints.ravel()]
        annotations.append(person_annotation(100 + image_id, image_id, flat, box, box[2] * box[3]))
    return {"images": images, "annotations": annotations, "categories": [COCO_PERSON.coco_category()]}


def _subset(coco: dict[str, Any], image_ids: set[int], strip_labels: bool = False) -> dict[str, Any]:
    annotations = [dict(a) for a in coco["annotations"] if a["image_id"] in image_ids]
    if strip_labels:
        for annotation in annotations:
            annotation["keypoints"] = [0] * 51
            annotation["num_keypoints"] = 0
    return {
        "images": [i for i in coco["images"] if i["id"] in image_ids],
        "annotations": annotations,
        "categories": coco["categories"],
    }


def make_tiny_split(
    root: Path, num_labeled: int = 4, num_unlabeled: int = 8, num_holdout: int = 3, seed: int = 0
) -> SplitFiles:
    """SplitFiles over freshly drawn images: labeled, unlabeled (labels removed), holdout; val = holdout."""
    total = num_labeled + num_unlabeled + num_holdout
    coco = write_coco(root, total, seed)
    ids = list(range(1, total + 1))
    parts = {
        "labeled": _subset(coco, set(ids[:num_labeled])),
        "unlabeled": _subset(coco, set(ids[num_labeled : num_labeled + num_unlabeled]), strip_labels=True),
        "holdout": _subset(coco, set(ids[num_labeled + num_unlabeled :])),
    }
    paths = {}
    for name, part in parts.items():
        paths[name] = root / f"{name}.json"
        paths[name].write_text(json.dumps(part))
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps({"seed": seed}))
    return SplitFiles(
        labeled_ann=paths["labeled"],
        unlabeled_ann=paths["unlabeled"],
        holdout_ann=paths["holdout"],
        train_images=root / "images",
        val_ann=paths["holdout"],
        val_images=root / "images",
        manifest=manifest,
    )


def tiny_overrides(method: str = "trs", **train: Any) -> list[str]:
    """resnet18 at 64x48 with 32-channel deconvolutions: a few iterations take seconds on the CPU."""
    overrides = [
        "input.image_size=[64, 48]",
        "model.deconv_channels=32",
        "model.mfl_channels=8",
        f"train.method={method}",
        "train.iterations=6",
        "train.batch_size=2",
        "train.unlabeled_batch_size=2",
        "train.warmup_iters=2",
        "train.num_workers=0",
        "train.log_every=1",
        "train.ema.warmup_iters=2",
        "train.reviewer.check_every=2",
        "train.consistency.rampup_iters=2",
        "train.consistency.confidence_threshold=0.0",
        "train.checkpoint.every=2",
        "train.checkpoint.keep_last=10",
        "eval.batch_size=4",
        "eval.num_workers=0",
    ]
    return overrides + [f"train.{key}={value}" for key, value in train.items()]


def tiny_config(
    checkpoint_dir: Path | str, method: str = "trs", extra: list[str] | None = None, **train: Any
) -> ExperimentConfig:
    overrides = [*tiny_overrides(method, **train), f"train.checkpoint.dir={checkpoint_dir}", *(extra or [])]
    return load_config(None, overrides)
