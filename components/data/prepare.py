"""Bring the configured dataset into the local content-addressed cache, synthesising it if asked."""

from __future__ import annotations

from pathlib import Path

from components.config import DataConfig
from components.data.ingest import ingest
from components.data.split import coco_layout
from components.storage.s3 import is_s3_uri


def synthesise_if_missing(data_cfg: DataConfig) -> bool:
    """Generate synthetic people into `data.root` when it is local, empty and `data.synthetic` is set."""
    if data_cfg.synthetic is None or is_s3_uri(data_cfg.root):
        return False
    train_ann, _ = coco_layout(data_cfg.root, data_cfg.train_split)
    val_ann, _ = coco_layout(data_cfg.root, data_cfg.val_split)
    if train_ann.is_file() and val_ann.is_file():
        return False
    if (data_cfg.train_split, data_cfg.val_split) != ("train", "val"):
        raise ValueError(
            f"synthetic data is written with splits 'train' and 'val', but data.train_split="
            f"{data_cfg.train_split!r} and data.val_split={data_cfg.val_split!r}"
        )
    from components.data.synthetic import generate_dataset

    synth = data_cfg.synthetic
    generate_dataset(
        data_cfg.root, synth.num_train_images, synth.num_val_images, seed=synth.seed, image_size=synth.image_size
    )
    return True


def prepare_dataset(data_cfg: DataConfig, endpoint_url: str | None = None) -> Path:
    """The local root (COCO layout) of the configured data, ingested by content hash.

    Local sources are copied (a hard link would let an in-place edit change a cached entry); S3
    sources are downloaded once and reused while their listing is unchanged.
    """
    synthesise_if_missing(data_cfg)
    if not is_s3_uri(data_cfg.root) and not Path(data_cfg.root).is_dir():
        raise FileNotFoundError(f"{data_cfg.root}: data.root does not exist and data.synthetic is not set")
    return ingest(data_cfg.root, data_cfg.cache_dir, endpoint_url=endpoint_url)
