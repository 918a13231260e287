"""Bring the configured dataset into the local content-addressed cache, synthesising it if asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.config import DataConfig
from components.data.ingest import ingest
from components.data.split import coco_layout
from components.data.synthetic import generate_dataset, synthesis_info
from components.data.synthetic.writer import SYNTHETIC_DESCRIPTION
from components.storage.s3 import is_s3_uri

INFO_KEY = '"info":'
INFO_HEAD_CHARS = 1 << 16


def _synthetic_info(ann_file: Path) -> dict[str, Any] | None:
    """The `info` block of an annotation file we drew ourselves; None for any other (user) data.

    The writer puts `info` first, so only the head of the file is read: a user's 250 MB COCO file
    costs nothing here.
    """
    with ann_file.open(encoding="utf-8", errors="replace") as handle:
        head = handle.read(INFO_HEAD_CHARS)
    start = head.find(INFO_KEY)
    if start < 0:
        return None
    try:
        info, _ = json.JSONDecoder().raw_decode(head, start + len(INFO_KEY))
    except ValueError:
        return None
    return info if isinstance(info, dict) and info.get("description") == SYNTHETIC_DESCRIPTION else None


def synthesise_if_missing(data_cfg: DataConfig) -> bool:
    """Generate synthetic people into `data.root` when it is local, `data.synthetic` is set, and the
    folder is empty or holds a synthetic set drawn with other settings (a user's own data is never touched)."""
    if data_cfg.synthetic is None or is_s3_uri(data_cfg.root):
        return False
    synth = data_cfg.synthetic
    train_ann, _ = coco_layout(data_cfg.root, data_cfg.train_split)
    val_ann, _ = coco_layout(data_cfg.root, data_cfg.val_split)
    if train_ann.is_file() and val_ann.is_file():
        found = {"train": _synthetic_info(train_ann), "val": _synthetic_info(val_ann)}
        if None in found.values():
            return False
        wanted = {
            "train": synthesis_info(synth.seed, synth.style, synth.image_size, synth.num_train_images),
            "val": synthesis_info(synth.seed, synth.style, synth.image_size, synth.num_val_images),
        }
        if found == wanted:
            return False
    if (data_cfg.train_split, data_cfg.val_split) != ("train", "val"):
        raise ValueError(
            f"synthetic data is written with splits 'train' and 'val', but data.train_split="
            f"{data_cfg.train_split!r} and data.val_split={data_cfg.val_split!r}"
        )
    generate_dataset(
        data_cfg.root,
        synth.num_train_images,
        synth.num_val_images,
        seed=synth.seed,
        image_size=synth.image_size,
        style=synth.style,
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
