"""Bring a COCO keypoint set (local directory or s3://bucket/prefix) into a content-addressed cache.

The cache entry's name is a sha256 over the set's listing: relative path, size and a content hash
per file (the file's sha256 locally, the object's ETag on S3). A second run lists again, finds the
entry complete and downloads nothing; a changed file gives a new entry, so a run's data is pinned
by its fingerprint. Entries are built aside and renamed into place, so a killed ingest never leaves
a half-filled entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.atomic_files import write_atomically
from components.errors import TrsPoseError
from components.storage.s3 import S3Uri, download_file, is_s3_uri, iter_objects, s3_client

RECORD_NAME = ".ingest.json"  # written last into an entry; its presence marks the entry complete
HASH_INDEX_NAME = ".local-hashes.json"  # (path, size, mtime) -> sha256, so local files hash once
FINGERPRINT_CHARS = 24


class IngestError(TrsPoseError, RuntimeError):
    """The source cannot be read; the message names it and says why."""


@dataclass(frozen=True)
class SourceFile:
    relative: str  # POSIX path inside the set, e.g. "annotations/person_keypoints_train.json"
    size: int
    content_id: str  # sha256 (local) or ETag (S3)
    location: str  # absolute local path or S3 key


def fingerprint(files: Iterable[SourceFile]) -> str:
    digest = hashlib.sha256()
    for item in sorted(files, key=lambda f: f.relative):
        digest.update(f"{item.relative}\t{item.size}\t{item.content_id}\n".encode())
    return digest.hexdigest()


def ingest(
    source: str | Path,
    cache_dir: str | Path,
    *,
    endpoint_url: str | None = None,
    client: Any = None,
    workers: int = 8,
    hardlink: bool = False,
) -> Path:
    """The local root of `source`'s content in `cache_dir` (COCO layout preserved).

    Local files are copied; `hardlink=True` links them instead (no extra space, but an in-place
    edit of a source file then also changes the cache entry, which no longer matches its name).
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if is_s3_uri(source):
        return _ingest_s3(str(source), cache_dir, client or s3_client(endpoint_url), workers)
    return _ingest_local(Path(source), cache_dir, hardlink)


def read_ingest_record(root: str | Path) -> dict[str, Any]:
    """Provenance of an ingested root: source, fingerprint, file count and bytes."""
    return json.loads((Path(root) / RECORD_NAME).read_text())


def _entry(cache_dir: Path, files: list[SourceFile]) -> tuple[str, Path]:
    digest = fingerprint(files)
    return digest, cache_dir / digest[:FINGERPRINT_CHARS]


def _finish(staging: Path, entry: Path, source: str, digest: str, files: list[SourceFile]) -> Path:
    record = {"source": source, "fingerprint": digest, "files": len(files), "bytes": sum(f.size for f in files)}
    (staging / RECORD_NAME).write_text(json.dumps(record, indent=1))
    try:
        staging.rename(entry)
    except OSError:
        if not (entry / RECORD_NAME).is_file():  # another process won the race with a complete entry
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return entry


def _ingest_local(source: Path, cache_dir: Path, hardlink: bool) -> Path:
    if not source.is_dir():
        raise IngestError(f"{source}: not a directory (a COCO set is a directory with annotations/ and images)")
    files = _local_listing(source, cache_dir)
    if not files:
        raise IngestError(f"{source}: the directory holds no files")
    digest, entry = _entry(cache_dir, files)
    if (entry / RECORD_NAME).is_file():
        return entry
    staging = Path(tempfile.mkdtemp(prefix=f".partial-{entry.name}-", dir=cache_dir))
    try:
        for item in files:
            target = staging / item.relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if hardlink:
                try:
                    os.link(item.location, target)
                    continue
                except OSError:  # another filesystem: fall back to a copy
                    pass
            shutil.copy2(item.location, target)
        return _finish(staging, entry, str(source.resolve()), digest, files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _local_listing(source: Path, cache_dir: Path) -> list[SourceFile]:
    """Every non-hidden file under `source`, hashed only when its size or mtime changed."""
    index_path = cache_dir / HASH_INDEX_NAME
    try:
        index: dict[str, list[Any]] = json.loads(index_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        index = {}
    files = []
    for directory, subdirs, names in os.walk(source):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(directory) / name
            stat = path.stat()
            key = str(path.resolve())
            cached = index.get(key)
            if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
                content = cached[2]
            else:
                content = _sha256(path)
                index[key] = [stat.st_size, stat.st_mtime_ns, content]
            files.append(SourceFile(path.relative_to(source).as_posix(), stat.st_size, content, str(path)))
    write_atomically(index_path, json.dumps(index))
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _ingest_s3(source: str, cache_dir: Path, client: Any, workers: int) -> Path:
    from botocore.exceptions import BotoCoreError, ClientError

    uri = S3Uri.parse(source)
    prefix = uri.key.rstrip("/") + "/" if uri.key.strip("/") else ""
    try:
        objects = list(iter_objects(client, S3Uri(uri.bucket, prefix)))
    except (ClientError, BotoCoreError) as exc:
        raise IngestError(f"{source}: cannot list objects ({exc})") from exc
    files = [
        SourceFile(obj["Key"][len(prefix) :], int(obj["Size"]), str(obj.get("ETag", "")).strip('"'), obj["Key"])
        for obj in objects
        if not obj["Key"].endswith("/") and not Path(obj["Key"][len(prefix) :]).name.startswith(".")
    ]
    if not files:
        raise IngestError(f"{source}: no objects under this prefix")
    for item in files:
        if ".." in Path(item.relative).parts or item.relative.startswith("/"):
            raise IngestError(f"{source}: object key {item.location!r} would land outside the cache entry")
    digest, entry = _entry(cache_dir, files)
    if (entry / RECORD_NAME).is_file():
        return entry
    staging = Path(tempfile.mkdtemp(prefix=f".partial-{entry.name}-", dir=cache_dir))
    try:

        def fetch(item: SourceFile) -> None:
            target = download_file(client, S3Uri(uri.bucket, item.location), staging / item.relative)
            if target.stat().st_size != item.size:
                raise IngestError(f"{source}: {item.relative} arrived with {target.stat().st_size} bytes, listed {item.size}")

        try:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                list(pool.map(fetch, files))
        except (ClientError, BotoCoreError) as exc:
            raise IngestError(f"{source}: download failed ({exc})") from exc
        return _finish(staging, entry, source, digest, files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
