"""Step 1: bring the COCO-format data (local, s3:// or synthesised) into the local cache."""

from __future__ import annotations

from typing import Annotated

from zenml import step

from components.data.coco_json import count_records
from components.data.prepare import prepare_dataset
from components.data.split import coco_layout
from steps.artifacts import DatasetArtifact
from steps.context import experiment_config


@step(enable_cache=False)  # the source may change under the same name; ingest hashes its content
def ingest_data(config: dict) -> Annotated[DatasetArtifact, "dataset"]:
    cfg = experiment_config(config)
    root = prepare_dataset(cfg.data, endpoint_url=cfg.storage.endpoint_url)
    splits = (cfg.data.train_split, cfg.data.val_split)
    counts = {split: count_records(coco_layout(root, split)[0]) for split in splits}
    return DatasetArtifact(root=str(root), train_split=splits[0], val_split=splits[1], counts=counts)
