"""A labeling task for Label Studio or CVAT: the suggested images, the model's poses as pre-annotations, the scores.

The folder holds:
- `images/`: the suggested images, under their task names (the `file_name` of the COCO file);
- `images.txt`: where the user has each image (a path, an s3:// URI, `VIDEO#frame=N`), one a line;
- `pre_annotations.json`: COCO keypoints with the model's poses. Both tools import this format
  (CVAT: "COCO Keypoints 1.0", one category with `keypoints` and `skeleton`, which must match the
  task's skeleton; Label Studio: `label-studio-converter import coco`, which reads `bbox` and
  `keypoints` and would fail on an empty `segmentation`, so none is written). A keypoint the model
  is confident about (score at least `confident`) is visible (v=2); any other is unlabeled
  (0, 0, 0), for the annotator to place;
- `scores.csv`: every suggested person with its score and what the score is made of.
Image and annotation ids start above the labeled file's, so the labels that come back merge
without renumbering when the tool keeps them.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.atomic_files import write_atomically
from components.data.validation import decoded_size
from components.keypoints import KeypointSet
from components.labeling.suggestions import ImageSuggestion

CONFIDENT = 0.3


@dataclass(frozen=True)
class LabelingTask:
    folder: Path
    images: Path
    image_list: Path
    pre_annotations: Path
    scores: Path


def _keypoints(pose: np.ndarray, confident: float) -> tuple[list[float], int]:
    flat: list[float] = []
    visible = 0
    for x, y, score in pose:
        if score >= confident:
            flat.extend([round(float(x), 2), round(float(y), 2), 2])
            visible += 1
        else:
            flat.extend([0, 0, 0])
    return flat, visible


def write_task(
    suggestions: Sequence[ImageSuggestion],
    out_dir: str | Path,
    keypoint_set: KeypointSet,
    *,
    first_image_id: int = 1,
    first_annotation_id: int = 1,
    method: str = "",
    model: str = "",
    confident: float = CONFIDENT,
) -> LabelingTask:
    """The task folder for `suggestions` (see the module doc)."""
    folder = Path(out_dir)
    images_dir = folder / "images"
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    ann_id = first_annotation_id
    for rank, suggestion in enumerate(suggestions, start=1):
        image_id = first_image_id + rank - 1
        target = images_dir / suggestion.task_name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(suggestion.image_path, target)
        width, height = decoded_size(target)
        images.append({"id": image_id, "file_name": suggestion.task_name, "width": width, "height": height})
        for person in suggestion.people:
            x, y, w, h = (float(v) for v in person.record.bbox)
            flat, visible = _keypoints(person.keypoints, confident)
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": keypoint_set.category_id,
                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)], "area": round(w * h, 2), "iscrowd": 0,
                "keypoints": flat, "num_keypoints": visible, "score": round(person.score, 4),
            })  # fmt: skip
            rows.append([rank, suggestion.task_name, suggestion.origin, round(suggestion.score, 4), ann_id,
                         round(person.score, 4), json.dumps(person.parts), ";".join(suggestion.stands_for)])  # fmt: skip
            ann_id += 1
    coco = {
        "info": {"description": "trs-pose label suggestions (pre-annotations)", "model": model, "score": method},
        "images": images,
        "annotations": annotations,
        "categories": [keypoint_set.coco_category()],
    }
    task = LabelingTask(
        folder, images_dir, folder / "images.txt", folder / "pre_annotations.json", folder / "scores.csv"
    )
    write_atomically(task.pre_annotations, json.dumps(coco, indent=1))
    write_atomically(task.image_list, "".join(f"{s.origin}\n" for s in suggestions))
    with task.scores.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "image", "origin", "image_score", "annotation_id", "person_score", "parts",
                         "near_duplicates_left_out"])  # fmt: skip
        writer.writerows(rows)
    return task
