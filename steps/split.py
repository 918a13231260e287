"""Step 3: labeled / unlabeled / held-out split with a manifest of ids and hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

from zenml import step

from components.config import DataConfig
from components.data.split import coco_layout, make_split
from steps.artifacts import DatasetArtifact, SplitArtifact, ValidationArtifact


@step(enable_cache=True)
def split_data(
    dataset: DatasetArtifact, validation: ValidationArtifact, data_config: dict
) -> tuple[Annotated[SplitArtifact, "split"], Annotated[dict, "split_manifest"]]:
    """Takes only the data section, so runs that differ in training settings share the cached split.
    The manifest (ids and sha256 of every file) is an artifact of its own, stored with the run."""
    if not validation.ok:
        raise RuntimeError(f"refusing to split data that failed validation (report: {validation.report_dir})")
    data_cfg = DataConfig.model_validate(data_config)
    train_ann, train_images = coco_layout(dataset.root, dataset.train_split)
    val_ann, val_images = coco_layout(dataset.root, dataset.val_split)
    settings = hashlib.sha256(data_cfg.model_dump_json().encode()).hexdigest()[:12]
    out_dir = f"{dataset.root}.splits/{settings}"
    files = make_split(train_ann, train_images, val_ann, val_images, out_dir, data_cfg)
    manifest = json.loads(Path(files.manifest).read_text())
    paths = {name: str(path) for name, path in vars(files).items()}
    return SplitArtifact(**paths, dataset_root=dataset.root), manifest
