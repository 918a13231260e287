"""Step 1: bring the COCO-format data (local, s3:// or synthesised) into the local cache."""

from __future__ import annotations

from typing import Annotated

from zenml import step

from components.data.prepare import prepare_dataset
from steps.artifacts import DatasetArtifact
from steps.context import experiment_config


@step(enable_cache=False)  # the source may change under the same name; ingest hashes its content
def ingest_data(config: dict) -> Annotated[DatasetArtifact, "dataset"]:
    cfg = experiment_config(config)
    root = prepare_dataset(cfg.data, endpoint_url=cfg.storage.endpoint_url)
    return DatasetArtifact(root=str(root), train_split=cfg.data.train_split, val_split=cfg.data.val_split)
