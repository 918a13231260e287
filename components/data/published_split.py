"""A split on S3 for training pods: published by the pipeline, fetched and hash-checked by the pod.

The pod trains on exactly the split the pipeline validated and recorded, not on one it would make
again from the data's locations (which may have changed since). The pipeline uploads the split's
annotation files and manifest to `s3://BUCKET/splits/<manifest sha256>/` and each image folder (the
training images, the validation images and the pool of raw unlabeled images) to a prefix named by
its content fingerprint (uploaded once, shared by every split of that data), then hands the pod the
URIs together with the sha256 of every file as the manifest recorded it. The pod checks each
download against those hashes, never against a manifest it downloaded itself.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from components.data.split import SplitFiles, sha256_file
from components.errors import TrsPoseError
from components.storage.s3 import S3Uri, download_file, iter_objects, upload_file

SPLIT_ENV = "TRS_POSE_SPLIT"  # the pod's environment variable holding a PublishedSplit as JSON
SPLITS_PREFIX = "splits"
DATASETS_PREFIX = "datasets"
# file name in the split folder -> the SplitFiles field it becomes
SPLIT_FILES = {
    "labeled.json": "labeled_ann",
    "unlabeled.json": "unlabeled_ann",
    "holdout.json": "holdout_ann",
    "val.json": "val_ann",
    "manifest.json": "manifest",
}
POOL_FILE = "unlabeled_pool.json"  # present when the run has raw unlabeled images
IMAGE_FOLDERS = ("train_images", "val_images", "pool_images")


class SplitIntegrityError(TrsPoseError, ValueError):
    """A downloaded split file is not the one the pipeline recorded; the message names both hashes."""


@dataclass(frozen=True)
class PublishedSplit:
    uri: str  # s3://bucket/splits/<manifest sha256>
    sha256: dict[str, str]  # file name under `uri` -> sha256, from the manifest the pipeline recorded
    images: dict[str, str]  # "train_images", "val_images" (and "pool_images") -> s3://bucket/datasets/<fingerprint>

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PublishedSplit:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as exc:
            raise SplitIntegrityError(f"{SPLIT_ENV}: not a published split ({exc})") from exc


def _upload_missing(client: Any, folder: Path, target: S3Uri, workers: int) -> int:
    """Upload every file under `folder` that is not at the same key with the same size; returns the count."""
    present = {obj["Key"]: int(obj["Size"]) for obj in iter_objects(client, target.join(""))}
    todo = [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and present.get(target.join(path.relative_to(folder).as_posix()).key) != path.stat().st_size
    ]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(lambda p: upload_file(client, p, target.join(p.relative_to(folder).as_posix())), todo))
    return len(todo)


def publish_split(split: SplitFiles, client: Any, bucket: str, workers: int = 8) -> PublishedSplit:
    """Upload the split (annotations + manifest) and, once per content, each image folder.

    The image folders are cache entries named by their content fingerprint, so the prefix they go
    to names their content too."""
    manifest = json.loads(Path(split.manifest).read_text())
    recorded = {name: entry["sha256"] for name, entry in manifest["outputs"].items()}
    hashes = {
        "labeled.json": recorded["labeled_ann"],
        "unlabeled.json": recorded["unlabeled_ann"],
        "holdout.json": recorded["holdout_ann"],
        "val.json": manifest["inputs"]["val_ann"]["sha256"],
        "manifest.json": sha256_file(split.manifest),
    }
    local = {name: Path(getattr(split, field)) for name, field in SPLIT_FILES.items()}
    if split.pool_ann is not None:
        hashes[POOL_FILE] = recorded["pool_ann"]
        local[POOL_FILE] = Path(split.pool_ann)
    for name, path in local.items():  # what goes up must be what the manifest recorded
        actual = sha256_file(path)
        if actual != hashes[name]:
            raise SplitIntegrityError(f"{path}: sha256 {actual} differs from the manifest's {hashes[name]}")
    split_uri = S3Uri(bucket, f"{SPLITS_PREFIX}/{hashes['manifest.json']}")
    for name, path in local.items():
        upload_file(client, path, split_uri.join(name))
    images: dict[str, str] = {}
    for field in IMAGE_FOLDERS:
        folder = getattr(split, field)
        if folder is None:
            continue
        target = S3Uri(bucket, f"{DATASETS_PREFIX}/{Path(folder).resolve().name}")
        _upload_missing(client, Path(folder), target, workers)
        images[field] = str(target)
    return PublishedSplit(str(split_uri), hashes, images)


def _download_prefix(client: Any, prefix: S3Uri, target: Path, workers: int) -> None:
    """Every object under `prefix` into `target`, skipping files already there with the same size."""
    start = prefix.key.rstrip("/") + "/"
    todo = []
    for obj in iter_objects(client, S3Uri(prefix.bucket, start)):
        relative = obj["Key"][len(start) :]
        if not relative or ".." in Path(relative).parts:
            continue
        local = target / relative
        if not (local.is_file() and local.stat().st_size == int(obj["Size"])):
            todo.append((S3Uri(prefix.bucket, obj["Key"]), local))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(lambda item: download_file(client, *item), todo))


def fetch_split(published: PublishedSplit, target: str | Path, client: Any, workers: int = 8) -> SplitFiles:
    """Download the split and its images into `target` and check every file's sha256; raises
    SplitIntegrityError naming the file and both hashes on the first mismatch."""
    target = Path(target)
    split_uri = S3Uri.parse(published.uri)
    names = [*SPLIT_FILES, *([POOL_FILE] if "pool_images" in published.images else [])]
    for name in names:
        if name not in published.sha256:
            raise SplitIntegrityError(f"{SPLIT_ENV}: no recorded sha256 for {name}")
        local = download_file(client, split_uri.join(name), target / "split" / name)
        actual = sha256_file(local)
        if actual != published.sha256[name]:
            raise SplitIntegrityError(
                f"{split_uri.join(name)}: sha256 {actual} but the pipeline recorded {published.sha256[name]}; "
                "the split changed after it was validated, refusing to train on it"
            )
    for field, uri in published.images.items():
        _download_prefix(client, S3Uri.parse(uri), target / "images" / field, workers)
    files = split_files_in(published, target)
    if files.pool_ann is not None and files.pool_images is not None:
        _check_pool_images(files.pool_ann, files.pool_images, workers)
    return files


def _check_pool_images(pool_ann: Path, folder: Path, workers: int) -> None:
    """Each raw unlabeled image against the sha256 its (hash-checked) pool file records."""
    images = json.loads(pool_ann.read_text())["images"]

    def mismatch(image: dict[str, Any]) -> str | None:
        path = folder / image["file_name"]
        actual = sha256_file(path) if path.is_file() else "missing"
        return None if actual == image["sha256"] else f"{path}: sha256 {actual}, the pipeline recorded {image['sha256']}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = [problem for problem in pool.map(mismatch, images) if problem is not None]
    if problems:
        raise SplitIntegrityError(f"{problems[0]} (and {len(problems) - 1} more); refusing to train on it")


def split_files_in(published: PublishedSplit, target: str | Path) -> SplitFiles:
    """Where `fetch_split` put everything (for the other processes of a node, which wait for it)."""
    target = Path(target)
    files = {field: target / "split" / name for name, field in SPLIT_FILES.items()}
    folders = {field: target / "images" / field for field in published.images}
    pool = "pool_images" in published.images
    return SplitFiles(
        **files,
        train_images=folders["train_images"],
        val_images=folders["val_images"],
        pool_ann=target / "split" / POOL_FILE if pool else None,
        pool_images=folders.get("pool_images"),
    )


def published_split_from_env(environ: dict[str, str] | None = None) -> PublishedSplit | None:
    text = (os.environ if environ is None else environ).get(SPLIT_ENV)
    return PublishedSplit.from_json(text) if text else None
