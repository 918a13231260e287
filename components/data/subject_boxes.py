"""Boxes of the subjects in raw unlabeled images: the whole image, a detections file, or a detector run.

Each source gives the same records, `{"file_name": <pool name>, "bbox": [x, y, w, h], "score": s}`,
for the usable pool images (components/data/unlabeled_pool.py):
- `whole_image_boxes`: one subject filling each image (cropped animals, hands, single-person frames);
- `boxes_from_file`: a COCO detection-results JSON whose records name the image by `file_name`, either
  its pool name (`images/0/a.jpg`) or its name inside its source (`a.jpg`, `<video stem>/frame_000012.jpg`);
- `DetectionRun`: a torchvision detector from a local weights file, over the images in batches. Every
  finished batch is appended to a progress file keyed by the weights' hash, the settings and the images,
  so a killed run resumes where it stopped and a rerun with nothing new detects nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from components.atomic_files import write_atomically
from components.config import DataConfig, UnlabeledDetectorConfig
from components.data.ingest import sha256_of
from components.data.unlabeled_pool import PoolImage, UnlabeledPool, source_name
from components.errors import TrsPoseError

BoxRecord = dict[str, Any]


class BoxSourceError(TrsPoseError, ValueError):
    """A boxes file or detector that cannot give boxes; the message names the file, the record and the rule."""


def whole_image_boxes(images: Sequence[PoolImage]) -> list[BoxRecord]:
    return [{"file_name": image.file_name, "bbox": [0.0, 0.0, float(image.width), float(image.height)], "score": 1.0}
            for image in images]  # fmt: skip


def boxes_from_file(
    path: str | Path, images: Sequence[PoolImage], pool: UnlabeledPool, min_score: float = 0.0
) -> list[BoxRecord]:
    """The records of a detection-results file that name a usable pool image, scoring at least `min_score`."""
    try:
        detections = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise BoxSourceError(f"{path}: data.unlabeled.boxes names a file that does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BoxSourceError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(detections, list):
        raise BoxSourceError(f"{path}: a detection-results file is a JSON list of {{file_name, bbox, score}}")
    by_name: dict[str, str] = {}
    for image in images:
        by_name[image.file_name] = image.file_name
        by_name.setdefault(source_name(image.file_name, pool), image.file_name)
    records = []
    for index, det in enumerate(detections):
        where = f"{path}: record {index}"
        if not isinstance(det, dict) or "file_name" not in det:
            raise BoxSourceError(f"{where}: rule 'a record names its image by file_name'")
        try:
            x, y, w, h = (float(v) for v in det["bbox"])
            score = float(det.get("score", 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise BoxSourceError(f"{where}: rule 'bbox is [x, y, w, h] and score a number' ({exc})") from exc
        if not all(np.isfinite((x, y, w, h, score))):
            raise BoxSourceError(f"{where}: rule 'bbox and score are finite numbers'")
        pool_name = by_name.get(str(det["file_name"]))
        if pool_name is not None and w > 0 and h > 0 and score >= min_score:
            records.append({"file_name": pool_name, "bbox": [x, y, w, h], "score": score})
    return records


class DetectionRun:
    """The detector over a list of pool images, resumable: see the module doc."""

    def __init__(self, cfg: UnlabeledDetectorConfig, pool: UnlabeledPool, images: Sequence[PoolImage], cache_dir: Path):
        if not cfg.weights:
            raise BoxSourceError("data.unlabeled.detector.weights is not set")
        self.cfg, self.pool, self.images = cfg, pool, list(images)
        weights = Path(cfg.weights)
        if not weights.is_file():
            raise BoxSourceError(f"{weights}: data.unlabeled.detector.weights is not a file")
        settings = {
            "weights_sha256": sha256_of(weights),
            "arch": cfg.arch,
            "category": cfg.category,
            "min_score": cfg.min_score,
            "images": [image.sha256 for image in self.images],
        }
        self.settings = {k: v for k, v in settings.items() if k != "images"}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
        self.progress = Path(cache_dir) / "detections" / f"{key}.jsonl"

    def done(self) -> dict[str, list[list[float]]]:
        """file_name -> [[x, y, w, h, score], ...] of every image a finished batch covered."""
        found: dict[str, list[list[float]]] = {}
        if not self.progress.is_file():
            return found
        for line in self.progress.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the torn last line of a killed run: that batch runs again
                break
            found[entry["file_name"]] = entry["boxes"]
        return found

    def run(self, on_batch: Callable[[int, int], None] | None = None) -> list[BoxRecord]:
        """Detect on every image not yet done; `on_batch(done, total)` after each batch."""
        from components.data.validation import load_rgb
        from components.serving.detector import DetectorError, detect_batch, load_detector

        done = self.done()
        todo = [image for image in self.images if image.file_name not in done]
        if todo:
            try:
                detector = load_detector(self.cfg.weights or "", self.cfg.arch)  # type: ignore[arg-type]
            except DetectorError as exc:
                raise BoxSourceError(f"data.unlabeled.detector: {exc}") from exc
            self.progress.parent.mkdir(parents=True, exist_ok=True)
            with self.progress.open("a") as out:
                for start in range(0, len(todo), self.cfg.batch_size):
                    batch = todo[start : start + self.cfg.batch_size]
                    pixels = [load_rgb(self.pool.root / image.file_name) for image in batch]
                    found = detect_batch(detector, pixels, self.cfg.category, self.cfg.min_score)
                    for image, (boxes, scores) in zip(batch, found, strict=True):
                        rows = [[*map(float, box), float(score)] for box, score in zip(boxes, scores, strict=True)]
                        done[image.file_name] = rows
                        out.write(json.dumps({"file_name": image.file_name, "boxes": rows}) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                    if on_batch is not None:
                        on_batch(len(self.images) - len(todo) + start + len(batch), len(self.images))
        return [
            {"file_name": image.file_name, "bbox": row[:4], "score": row[4]}
            for image in self.images
            for row in done[image.file_name]
        ]


def subject_boxes(
    data_cfg: DataConfig,
    pool: UnlabeledPool,
    images: Sequence[PoolImage],
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[list[BoxRecord], dict[str, Any]]:
    """The boxes `data.unlabeled.boxes` asks for (whole_image, detector, or a detection-results file)
    and where they came from, for the split manifest: the detector's weights hash and settings, or the
    file's path and hash."""
    source = data_cfg.unlabeled.boxes
    if source == "whole_image":
        return whole_image_boxes(images), {"box_source": source}
    if source == "detector":
        run = DetectionRun(data_cfg.unlabeled.detector, pool, images, Path(data_cfg.cache_dir))
        return run.run(on_batch), {"box_source": source, **run.settings}
    return boxes_from_file(source, images, pool), {"box_source": "file", "path": source, "sha256": sha256_of(Path(source))}
