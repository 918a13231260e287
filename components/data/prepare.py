"""Bring the configured data into the local content-addressed cache, drawing synthetic people if asked.

Order matters for the user's data: synthetic people are drawn only into a folder trs-pose may draw
into (components/data/synthetic/folder.py); then every location is checked (one line naming what
was looked for and what was found); only then is anything read. No source is ever written.
"""

from __future__ import annotations

import json

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.atomic_files import write_atomically
from components.config import ConfigError, DataConfig
from components.data.split import PoolInput
from components.data.subject_boxes import subject_boxes
from components.data.ingest import ingest, read_ingest_record
from components.data.sources import check_sources, data_sources
from components.data.synthetic import generate_dataset
from components.data.synthetic.folder import annotation_info, drawable, is_ours, read_mark
from components.data.synthetic.writer import synthesis_settings
from components.data.unlabeled_pool import UnlabeledPool, build_pool, check_pool
from components.errors import TrsPoseError
from components.storage.s3 import is_s3_uri, s3_client


@dataclass(frozen=True)
class PreparedData:
    """Local, content-addressed copies of a run's data: the same path always means the same bytes."""

    train_ann: Path
    train_images: Path
    val_ann: Path
    val_images: Path
    fingerprints: dict[str, str]  # each labeled location's content fingerprint
    pool: UnlabeledPool | None  # raw unlabeled images and video frames, when configured


def _drawn_as_wanted(root: Path, wanted: dict[str, Any]) -> bool:
    """The folder already holds the synthetic set these settings draw."""
    mark = read_mark(root)
    if mark is not None:
        found = {split: mark.get(split) for split in wanted}
    else:
        found = {split: annotation_info(root / "annotations" / f"person_keypoints_{split}.json") for split in wanted}
    files = all((root / "annotations" / f"person_keypoints_{split}.json").is_file() for split in wanted)
    return files and found == wanted


def synthesise_if_missing(data_cfg: DataConfig) -> bool:
    """Draw synthetic people into `data.root` when `data.synthetic` is set and the folder is new, empty,
    or trs-pose's own with other settings. A user's folder is left alone (the source check then says
    what it lacks). Returns whether anything was drawn."""
    synth = data_cfg.synthetic
    if synth is None or data_cfg.root is None or not data_cfg.draws_synthetic or is_s3_uri(data_cfg.root):
        return False
    root = Path(data_cfg.root)
    if not drawable(root):
        return False
    wanted = synthesis_settings(synth.seed, synth.style, synth.image_size, synth.num_train_images, synth.num_val_images)
    if is_ours(root) and _drawn_as_wanted(root, wanted):
        return False
    if (data_cfg.train_split, data_cfg.val_split) != ("train", "val"):
        raise ConfigError(
            f"synthetic data is written with splits 'train' and 'val', but data.train_split="
            f"{data_cfg.train_split!r} and data.val_split={data_cfg.val_split!r}"
        )
    generate_dataset(
        root,
        synth.num_train_images,
        synth.num_val_images,
        seed=synth.seed,
        image_size=synth.image_size,
        style=synth.style,
    )
    return True


def check_before_run(data_cfg: DataConfig) -> None:
    """The local locations of a run checked before any server is contacted or anything written: one line
    naming what was looked for and what was found. A folder synthetic people will be drawn into is
    not checked (the ingest step draws them)."""
    if data_cfg.draws_synthetic and data_cfg.root is not None and drawable(data_cfg.root):
        return
    check_sources(data_cfg, local_only=True)


def prepare_dataset(
    data_cfg: DataConfig, endpoint_url: str | None = None, *, synthesise: bool = True
) -> PreparedData:
    """Every configured location, checked and ingested by content hash; raw unlabeled sources pooled.
    With `synthesise`, synthetic people are drawn first when the config asks for them.

    Local sources are copied (a hard link would let an in-place edit change a cached entry); S3
    sources are downloaded once and reused while their listing is unchanged.
    """
    if synthesise:
        synthesise_if_missing(data_cfg)
    unlabeled = data_cfg.unlabeled
    locations = [*data_sources(data_cfg).items().values(), *unlabeled.images, *unlabeled.videos]
    client = s3_client(endpoint_url) if any(is_s3_uri(location) for location in locations) else None
    sources = check_sources(data_cfg, client)
    local: dict[str, Path] = {}
    fingerprints: dict[str, str] = {}
    for field, location in sources.items().items():
        local[field] = ingest(location, data_cfg.cache_dir, endpoint_url=endpoint_url, client=client)
        fingerprints[field] = read_ingest_record(local[field])["fingerprint"]
    pool = build_pool(data_cfg.unlabeled, data_cfg.cache_dir, endpoint_url=endpoint_url, client=client)
    return PreparedData(
        train_ann=local["train_ann"],
        train_images=local["train_images"],
        val_ann=local["val_ann"],
        val_images=local["val_images"],
        fingerprints=fingerprints,
        pool=pool,
    )


class UnlabeledDataError(TrsPoseError, ValueError):
    """Raw unlabeled images were refused (`data.unlabeled.on_error: fail`); the message lists the first."""


def pool_input(data: PreparedData, data_cfg: DataConfig, report_dir: str | Path) -> PoolInput | None:
    """The raw unlabeled images a split takes, checked and boxed, outside the pipeline (whose steps do
    the same, one step each, for lineage)."""
    if data.pool is None:
        return None
    checked = check_pool(data.pool, data_cfg.unlabeled, report_dir)
    if checked.skipped and data_cfg.unlabeled.on_error == "fail":
        shown = "; ".join(str(v) for v in checked.skipped[:3])
        raise UnlabeledDataError(
            f"{len(checked.skipped)} of {checked.checked} raw unlabeled images are unusable "
            f"(data.unlabeled.on_error=fail): {shown}; report: {checked.index}"
        )
    boxes, provenance = subject_boxes(data_cfg, data.pool, checked.usable)
    boxes_file = Path(report_dir) / "boxes.json"
    write_atomically(boxes_file, json.dumps({"provenance": provenance, "boxes": boxes}))
    return PoolInput(data.pool, checked.usable, boxes, provenance, boxes_file)
