"""One call from a model and a split to a labeling task: score the unlabeled people, pick the images,
write the task. The `suggest` command and the pipeline's `suggest_labels` step both run it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.config import ExperimentConfig
from components.data.records import PersonRecord, load_person_records
from components.data.split import SplitFiles
from components.labeling.labeling_task import LabelingTask, write_task
from components.labeling.suggestions import ImageSuggestion, pick_images, split_origins
from components.labeling.uncertainty import ScoringModels, score_people


@dataclass(frozen=True)
class Suggestions:
    task: LabelingTask
    picked: list[ImageSuggestion]
    method: str  # how the people were scored (components/labeling/uncertainty.py)
    people_scored: int
    images_scored: int


def unlabeled_people(split: SplitFiles, cfg: ExperimentConfig) -> list[PersonRecord]:
    """Every unlabeled person of the split: the labeled file's rest and the raw images' boxes."""
    keypoints = cfg.keypoints.keypoint_set()
    return [
        record
        for ann, images in split.unlabeled_sources()
        for record in load_person_records(ann, images, min_keypoints=0, keypoints=keypoints)
    ]


def _above(path: Path, key: str) -> int:
    """One more than the largest id of `key` in a COCO file (labeled ids stay clear of the task's)."""
    return max((int(item["id"]) for item in json.loads(path.read_text()).get(key, [])), default=0) + 1


def suggest_labels(
    models: ScoringModels,
    cfg: ExperimentConfig,
    split: SplitFiles,
    budget: int,
    out_dir: str | Path,
    *,
    model_label: str = "",
    max_images: int | None = None,
    seed: int = 0,
) -> Suggestions:
    """The `budget` images to label next and their task folder. `max_images` scores a random sample of
    that many unlabeled images (by `seed`) instead of all, for a bounded cost inside a pipeline run."""
    people = unlabeled_people(split, cfg)
    images = sorted({str(r.image_path) for r in people})
    if max_images is not None and len(images) > max_images:
        keep = set(np.random.default_rng(seed).choice(images, size=max_images, replace=False).tolist())
        people = [r for r in people if str(r.image_path) in keep]
    scored = score_people(models, people, cfg, batch_size=cfg.eval.batch_size)
    picked = pick_images(scored, budget, split_origins(split))
    labeled_files = (split.labeled_ann, split.holdout_ann, split.unlabeled_ann)
    first_image = max(_above(path, "images") for path in labeled_files)
    first_ann = max(_above(path, "annotations") for path in labeled_files)
    task = write_task(
        picked,
        out_dir,
        cfg.keypoints.keypoint_set(),
        first_image_id=first_image,
        first_annotation_id=first_ann,
        method=models.method,
        model=model_label,
    )
    return Suggestions(task, picked, models.method, len(scored), len({str(p.record.image_path) for p in scored}))
