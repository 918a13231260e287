"""Step 4: labeled / unlabeled / held-out split with a manifest of ids and hashes, and the raw unlabeled
images with their boxes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

from zenml import step

from components.config import DataConfig
from components.data.split import PoolInput, make_split
from components.data.unlabeled_pool import read_usable
from steps.artifacts import BoxesArtifact, DatasetArtifact, SplitArtifact, ValidationArtifact
from steps.context import beside_entry


@step(enable_cache=True)
def split_data(
    dataset: DatasetArtifact, validation: ValidationArtifact, boxes: BoxesArtifact, data_config: dict
) -> tuple[Annotated[SplitArtifact, "split"], Annotated[dict, "split_manifest"]]:
    """Takes only the data section, so runs that differ in training settings share the cached split.
    The manifest (ids and sha256 of every file) is an artifact of its own, stored with the run."""
    if not validation.ok:
        raise RuntimeError(f"refusing to split data that failed validation (report: {validation.report_dir})")
    data_cfg = DataConfig.model_validate(data_config)
    pool = dataset.unlabeled_pool()
    pool_input = None
    if pool is not None and validation.unlabeled_index is not None and boxes.boxes_file is not None:
        records = json.loads(Path(boxes.boxes_file).read_text())["boxes"]
        images = read_usable(validation.unlabeled_index)
        pool_input = PoolInput(pool, images, records, boxes.provenance, Path(boxes.boxes_file))
    settings = hashlib.sha256((data_cfg.model_dump_json() + (boxes.boxes_file or "")).encode()).hexdigest()[:12]
    out_dir = beside_entry(dataset.train_ann, "splits", settings)
    files = make_split(
        dataset.train_ann, dataset.train_images, dataset.val_ann, dataset.val_images, out_dir, data_cfg, pool_input
    )
    manifest = json.loads(Path(files.manifest).read_text())
    paths = {name: str(path) if path is not None else None for name, path in vars(files).items()}
    return SplitArtifact(**paths), manifest
