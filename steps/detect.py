"""Step 3: subject boxes for the raw unlabeled images: the whole image, a detections file, or a
torchvision detector run in batches, resumable (components/data/subject_boxes.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

from zenml import step

from components.atomic_files import write_atomically
from components.config import DataConfig
from components.data.subject_boxes import subject_boxes
from components.data.unlabeled_pool import read_usable
from steps.artifacts import BoxesArtifact, DatasetArtifact, ValidationArtifact


@step(enable_cache=False)  # a detector run resumes from its own progress file, so a rerun costs nothing
def find_subject_boxes(
    dataset: DatasetArtifact, validation: ValidationArtifact, data_config: dict
) -> tuple[Annotated[BoxesArtifact, "subject_boxes"], Annotated[list, "subject_box_records"]]:
    data_cfg = DataConfig.model_validate(data_config)
    pool = dataset.unlabeled_pool()
    if pool is None or validation.unlabeled_index is None:
        return BoxesArtifact(provenance={"box_source": "none"}, boxes_file=None, count=0), []
    images = read_usable(validation.unlabeled_index)
    boxes, provenance = subject_boxes(data_cfg, pool, images, lambda done, total: print(f"detector: {done}/{total}"))
    payload = json.dumps({"provenance": provenance, "boxes": boxes})
    key = hashlib.sha256(payload.encode()).hexdigest()[:24]
    path = Path(validation.unlabeled_index).parent / f"boxes-{key}.json"
    write_atomically(path, payload)
    return BoxesArtifact(provenance=provenance, boxes_file=str(path), count=len(boxes)), boxes
