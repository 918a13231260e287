"""Person records read from a COCO keypoint file: one box (and its keypoints) per record.

The datasets never touch raw JSON: they get a flat list of `PersonRecord`s, so every reading rule
(crowds skipped, boxes clipped to the image, people with too few labels dropped) lives here once.
Malformed input raises `RecordError` naming the file, the record and the rule it breaks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from components.errors import TrsPoseError
from components.keypoints import COCO_PERSON, KeypointSet, KeypointSetError, category_names, differences, keypoint_category

MIN_BOX_SIDE = 1.0  # pixels; thinner boxes (after clipping to the image) cannot be cropped


class RecordError(TrsPoseError, ValueError):
    """A COCO file the datasets cannot read; the message names the file, the record and the rule."""

    def __init__(self, file: str | Path, record: str, rule: str) -> None:
        self.file, self.record, self.rule = str(file), record, rule
        super().__init__(f"{file}: {record}: {rule}")


@dataclass(frozen=True)
class PersonRecord:
    """One person (or other subject) to crop. `keypoints` is [K, 3] (x, y, visibility) in image pixels, zeros if unlabeled."""

    image_path: Path
    image_id: int
    ann_id: int  # -1 for a detector box
    bbox: NDArray[np.float64]  # (x, y, w, h) in image pixels, clipped to the image
    keypoints: NDArray[np.float32]
    score: float  # detector confidence; 1.0 for ground-truth boxes
    area: float  # COCO's segment area for ground truth, box area for detections

    @property
    def num_labeled(self) -> int:
        return int(np.count_nonzero(self.keypoints[:, 2] > 0))


def _load_json(path: Path) -> dict[str, Any] | list[Any]:
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise RecordError(path, "<file>", "the file does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(path, "<file>", f"not valid JSON ({exc})") from exc


def _image_table(path: Path, coco: Any) -> dict[int, dict[str, Any]]:
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise RecordError(path, "<top level>", "a COCO file is an object with an 'images' list")
    table: dict[int, dict[str, Any]] = {}
    for position, image in enumerate(coco["images"]):
        if not isinstance(image, dict) or not {"id", "file_name", "width", "height"} <= image.keys():
            raise RecordError(path, f"images[{position}]", "needs id, file_name, width and height")
        table[int(image["id"])] = image
    return table


def _clipped_box(raw: Any, image: dict[str, Any]) -> NDArray[np.float64] | None:
    """The box clipped to the image, or None when nothing croppable is left (COCO has a few such)."""
    x, y, w, h = (float(v) for v in raw)
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1 = min(x + max(w, 0.0), float(image["width"]) - 1.0)
    y1 = min(y + max(h, 0.0), float(image["height"]) - 1.0)
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        return None
    return np.array([x0, y0, x1 - x0, y1 - y0])


def _parse_box(path: Path, where: str, raw: Any) -> list[float]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise RecordError(path, where, "bbox must be a list of 4 numbers [x, y, w, h]")
    if not all(isinstance(v, (int, float)) and np.isfinite(v) for v in raw):
        raise RecordError(path, where, "bbox must hold 4 finite numbers")
    return [float(v) for v in raw]


def _parse_keypoints(path: Path, where: str, raw: Any, num_keypoints: int) -> NDArray[np.float32]:
    if raw is None:
        return np.zeros((num_keypoints, 3), dtype=np.float32)
    if not isinstance(raw, list) or len(raw) != num_keypoints * 3:
        raise RecordError(path, where, f"keypoints must be a list of {num_keypoints * 3} numbers ({num_keypoints} x, y, v)")
    try:
        keypoints = np.asarray(raw, dtype=np.float32).reshape(num_keypoints, 3)
    except (TypeError, ValueError) as exc:
        raise RecordError(path, where, "keypoints must be numbers") from exc
    if not np.all(np.isfinite(keypoints)):
        raise RecordError(path, where, "keypoints must be finite")
    if not np.all(np.isin(keypoints[:, 2], (0.0, 1.0, 2.0))):
        raise RecordError(path, where, "keypoint visibility must be 0, 1 or 2")
    keypoints[keypoints[:, 2] == 0, :2] = 0.0
    return keypoints


def _image_of(path: Path, where: str, images: dict[int, dict[str, Any]], image_id: Any) -> dict[str, Any]:
    try:
        return images[int(image_id)]
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(path, where, f"image_id {image_id!r} is not listed in the images table") from exc


def file_keypoint_set(path: Path, coco: Any, expected: KeypointSet | None) -> tuple[int, int]:
    """(K, category id) of the file's keypoint category, checked against `expected` when given.

    A file without a `categories` list is taken to be of the expected set (COCO's person by default).
    """
    categories = coco.get("categories") if isinstance(coco, dict) else None
    if categories is None:
        fallback = expected or COCO_PERSON
        return fallback.num_keypoints, fallback.category_id
    try:
        category = keypoint_category(categories, str(path))
        names = category_names(category, str(path))
    except KeypointSetError as exc:
        raise RecordError(path, "categories", str(exc).removeprefix(f"{path}: ")) from None
    if expected is not None:
        problem = differences(expected, names)
        if problem is not None:
            raise RecordError(
                path, "categories", f"the keypoints are not the run's {expected.summary()}: {problem}"
            )
    return len(names), int(category.get("id", 1))


def load_person_records(
    ann_file: str | Path, image_dir: str | Path, min_keypoints: int = 0, keypoints: KeypointSet | None = None
) -> list[PersonRecord]:
    """Every non-crowd person of a COCO keypoint file with at least `min_keypoints` labeled keypoints.

    `min_keypoints=0` keeps box-only people too (the unlabeled split carries no keypoints). With
    `keypoints`, a file of another keypoint set is refused. Records come sorted by (image_id, ann_id)
    so dataset indices are stable across runs.
    """
    path, image_dir = Path(ann_file), Path(image_dir)
    coco = _load_json(path)
    images = _image_table(path, coco)
    annotations = coco.get("annotations") if isinstance(coco, dict) else None
    if not isinstance(annotations, list):
        raise RecordError(path, "<top level>", "a COCO file needs an 'annotations' list")
    num_keypoints, category_id = file_keypoint_set(path, coco, keypoints)
    records: list[PersonRecord] = []
    for position, ann in enumerate(annotations):
        where = f"annotations[{position}] (id {ann.get('id') if isinstance(ann, dict) else '?'})"
        if not isinstance(ann, dict) or not {"id", "image_id", "bbox"} <= ann.keys():
            raise RecordError(path, where, "an annotation needs id, image_id and bbox")
        if ann.get("iscrowd", 0) or ann.get("category_id", category_id) != category_id:
            continue
        image = _image_of(path, where, images, ann["image_id"])
        keypoints_array = _parse_keypoints(path, where, ann.get("keypoints"), num_keypoints)
        box = _clipped_box(_parse_box(path, where, ann["bbox"]), image)
        if box is None or np.count_nonzero(keypoints_array[:, 2] > 0) < min_keypoints:
            continue
        records.append(
            PersonRecord(
                image_path=image_dir / image["file_name"],
                image_id=int(ann["image_id"]),
                ann_id=int(ann["id"]),
                bbox=box,
                keypoints=keypoints_array,
                score=1.0,
                area=float(ann.get("area", box[2] * box[3])),
            )
        )
    records.sort(key=lambda r: (r.image_id, r.ann_id))
    return records


def load_detection_records(
    det_file: str | Path,
    ann_file: str | Path,
    image_dir: str | Path,
    min_score: float = 0.0,
    keypoints: KeypointSet | None = None,
) -> list[PersonRecord]:
    """Subject boxes from a COCO detection-results JSON; `ann_file` supplies image names, sizes and the keypoint set."""
    path = Path(det_file)
    coco = _load_json(Path(ann_file))
    images = _image_table(Path(ann_file), coco)
    num_keypoints, category_id = file_keypoint_set(Path(ann_file), coco, keypoints)
    detections = _load_json(path)
    if not isinstance(detections, list):
        raise RecordError(path, "<top level>", "detection results are a JSON list of {image_id, bbox, score}")
    records: list[PersonRecord] = []
    for position, det in enumerate(detections):
        where = f"detections[{position}]"
        if not isinstance(det, dict) or not {"image_id", "bbox", "score"} <= det.keys():
            raise RecordError(path, where, "a detection needs image_id, bbox and score")
        if det.get("category_id", category_id) != category_id:
            continue
        score = det["score"]
        if not isinstance(score, (int, float)) or not np.isfinite(score):
            raise RecordError(path, where, "score must be a finite number")
        if score < min_score:
            continue
        image = _image_of(path, where, images, det["image_id"])
        box = _clipped_box(_parse_box(path, where, det["bbox"]), image)
        if box is None:
            continue
        records.append(
            PersonRecord(
                image_path=Path(image_dir) / image["file_name"],
                image_id=int(det["image_id"]),
                ann_id=-1,
                bbox=box,
                keypoints=np.zeros((num_keypoints, 3), dtype=np.float32),
                score=float(score),
                area=float(box[2] * box[3]),
            )
        )
    records.sort(key=lambda r: (r.image_id, -r.score))
    return records


def image_ids(records: Iterable[PersonRecord]) -> list[int]:
    """Distinct image ids in first-seen order, e.g. to restrict COCO evaluation to what was predicted."""
    return list(dict.fromkeys(r.image_id for r in records))
