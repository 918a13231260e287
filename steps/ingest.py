"""Step 1: bring the labeled COCO-format data (local, s3:// or synthesised) and the raw unlabeled images
and videos into the local cache."""

from __future__ import annotations

from typing import Annotated

from zenml import step

from components.data.coco_json import count_records
from components.data.prepare import prepare_dataset
from steps.artifacts import DatasetArtifact
from steps.context import experiment_config


@step(enable_cache=False)  # the source may change under the same name; ingest hashes its content
def ingest_data(config: dict) -> Annotated[DatasetArtifact, "dataset"]:
    cfg = experiment_config(config)
    data = prepare_dataset(cfg.data, endpoint_url=cfg.storage.endpoint_url)
    return DatasetArtifact(
        train_ann=str(data.train_ann),
        train_images=str(data.train_images),
        val_ann=str(data.val_ann),
        val_images=str(data.val_images),
        fingerprints=data.fingerprints,
        pool=data.pool.as_dict() if data.pool is not None else None,
        counts={"train": count_records(data.train_ann), "val": count_records(data.val_ann)},
    )
