"""Where a run's data is, checked before anything is read or written.

The labeled COCO files and their image folders come from `data.root` in COCO's layout (the short
form) or from explicit `data.train_ann`, `data.train_images`, `data.val_ann` and `data.val_images`
(local paths or s3:// URIs, any names). Every source is read-only to trs-pose; the one folder it
ever draws into is its own (components/data/synthetic/folder.py).

When an expected file is missing, `check_sources` raises one line that says what was looked for and
what was found, with the setting that would fix it ("found annotations/person_keypoints_train2017.json:
set data.train_split=train2017").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.config import ConfigError, DataConfig
from components.storage.s3 import S3Uri, is_s3_uri, iter_objects

ANNOTATION_GLOB = "person_keypoints_*.json"
_SHOWN = 4  # found files named in a message


class DataSourceError(ConfigError):
    """A configured data location that does not hold what it should; the message says what was found."""


@dataclass(frozen=True)
class DataSources:
    """The four labeled-data locations of a run, each a local path or an s3:// URI."""

    train_ann: str
    train_images: str
    val_ann: str
    val_images: str

    def items(self) -> dict[str, str]:
        return {
            "train_ann": self.train_ann,
            "train_images": self.train_images,
            "val_ann": self.val_ann,
            "val_images": self.val_images,
        }


def _join(root: str, *parts: str) -> str:
    if is_s3_uri(root):
        return str(S3Uri.parse(root).join("/".join(parts)))
    return str(Path(root, *parts))


def data_sources(data_cfg: DataConfig) -> DataSources:
    """The explicit locations, each falling back to the short form under `data.root`."""

    def from_root(*parts: str) -> str:
        assert data_cfg.root is not None  # DataConfig requires root when any explicit path is missing
        return _join(data_cfg.root, *parts)

    return DataSources(
        train_ann=data_cfg.train_ann or from_root("annotations", f"person_keypoints_{data_cfg.train_split}.json"),
        train_images=data_cfg.train_images or from_root(data_cfg.train_split),
        val_ann=data_cfg.val_ann or from_root("annotations", f"person_keypoints_{data_cfg.val_split}.json"),
        val_images=data_cfg.val_images or from_root(data_cfg.val_split),
    )


def check_sources(data_cfg: DataConfig, client: Any = None, local_only: bool = False) -> DataSources:
    """The run's locations, each checked to exist (files and folders; S3 objects and prefixes), else one line.

    `client` is an S3 client for s3:// locations (made on demand); `local_only` skips them (a check
    before any server is contacted)."""
    sources = data_sources(data_cfg)

    def skip(location: str) -> bool:
        return local_only and is_s3_uri(location)

    for field, location in sources.items().items():
        wants_file = field.endswith("_ann")
        if skip(location) or _exists(location, wants_file, client):
            continue
        raise DataSourceError(_missing_message(data_cfg, field, location, wants_file, client))
    unlabeled = data_cfg.unlabeled
    for index, folder in enumerate(unlabeled.images):
        if not skip(folder) and not _exists(folder, False, client):
            raise DataSourceError(f"data.unlabeled.images[{index}]: {folder} is not a folder (or s3:// prefix) of images")
    for index, video in enumerate(unlabeled.videos):
        if not skip(video) and not _exists(video, True, client):
            raise DataSourceError(f"data.unlabeled.videos[{index}]: {video} is not a video file")
    boxes = unlabeled.boxes
    if unlabeled.any and boxes not in ("whole_image", "detector") and not skip(boxes) and not _exists(boxes, True, client):
        raise DataSourceError(
            f"data.unlabeled.boxes: {unlabeled.boxes} is neither whole_image, detector nor a detection-results file"
        )
    weights = unlabeled.detector.weights
    if unlabeled.any and unlabeled.boxes == "detector" and weights and not Path(weights).is_file():
        raise DataSourceError(f"data.unlabeled.detector.weights: {weights} is not a file")
    return sources


def _exists(location: str, wants_file: bool, client: Any) -> bool:
    if not is_s3_uri(location):
        path = Path(location)
        return path.is_file() if wants_file else path.is_dir()
    from components.storage.s3 import object_exists, s3_client

    client = client or s3_client()
    uri = S3Uri.parse(location)
    if wants_file:
        return bool(object_exists(client, uri))
    prefix = S3Uri(uri.bucket, uri.key.rstrip("/") + "/" if uri.key.strip("/") else "")
    return next(iter(iter_objects(client, prefix)), None) is not None


def _listing(folder: str, client: Any) -> list[str]:
    """Names of the COCO keypoint files in `folder` (local or s3://), sorted."""
    if not is_s3_uri(folder):
        path = Path(folder)
        return sorted(p.name for p in path.glob(ANNOTATION_GLOB)) if path.is_dir() else []
    from components.storage.s3 import s3_client

    uri = S3Uri.parse(folder)
    prefix = uri.key.rstrip("/") + "/"
    names = [obj["Key"][len(prefix) :] for obj in iter_objects(client or s3_client(), S3Uri(uri.bucket, prefix))]
    return sorted(n for n in names if "/" not in n and n.startswith("person_keypoints_") and n.endswith(".json"))


def _missing_message(data_cfg: DataConfig, field: str, location: str, wants_file: bool, client: Any) -> str:
    what = "file" if wants_file else "folder"
    explicit = getattr(data_cfg, field) is not None
    if explicit or data_cfg.root is None:
        return f"data.{field}: {location} is not a {what}"
    root = data_cfg.root
    if not _exists(root, False, client):
        return f"data.root={root} does not exist (looked for {location})"
    split_field = "train_split" if field.startswith("train") else "val_split"
    split = getattr(data_cfg, split_field)
    relative = f"annotations/person_keypoints_{split}.json" if wants_file else f"{split}/"
    found = _listing(_join(root, "annotations"), client)
    splits = [name.removeprefix("person_keypoints_").removesuffix(".json") for name in found]
    head = f"data.root={root}: no {relative} (data.{split_field}={split})"
    if not found:
        return f"{head}; found no annotations/{ANNOTATION_GLOB}: set data.{field}=<path> for other names"
    shown = ", ".join(f"annotations/{name}" for name in found[:_SHOWN]) + (", ..." if len(found) > _SHOWN else "")
    kind = "train" if field.startswith("train") else "val"
    likely = [s for s in splits if kind in s.lower()] or splits
    if not wants_file and split in splits:
        return f"{head}, though annotations/person_keypoints_{split}.json is there: set data.{field}=<its image folder>"
    return f"{head}; found {shown}: set data.{split_field}={likely[0]}"
