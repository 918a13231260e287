"""Bring data (a local or s3:// folder or file, or several under prefixes) into a content-addressed cache.

The cache entry's name is a sha256 over the listing: relative path, size and a content hash per
file (the file's sha256 locally, the object's ETag on S3). A second run lists again, finds the
entry complete and downloads nothing; a changed file gives a new entry, so a run's data is pinned
by its fingerprint. Entries are built aside and renamed into place, so a killed ingest never leaves
a half-filled entry that a later run would trust. Sources are only ever read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from components.atomic_files import write_atomically
from components.errors import TrsPoseError
from components.storage.s3 import S3Uri, download_file, is_s3_uri, iter_objects, s3_client

RECORD_NAME = ".ingest.json"  # written last into an entry; its presence marks the entry complete
HASH_INDEX_NAME = ".local-hashes.json"  # (path, size, mtime) -> sha256, so local files hash once
FINGERPRINT_CHARS = 24

FileFilter = Callable[[str], bool]  # keeps a file by its path relative to its source


class IngestError(TrsPoseError, RuntimeError):
    """The source cannot be read; the message names it and says why."""


@dataclass(frozen=True)
class SourceFile:
    relative: str  # POSIX path inside the entry, e.g. "annotations/person_keypoints_train.json"
    size: int
    content_id: str  # sha256 (local) or ETag (S3)
    location: str  # absolute local path or s3:// URI


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
    """The local copy of `source` in `cache_dir`: the entry's root for a folder (layout preserved),
    the file itself for a single file.

    Local files are copied; `hardlink=True` links them instead (no extra space, but an in-place
    edit of a source file then also changes the cache entry, which no longer matches its name).
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    client = client if client is not None or not is_s3_uri(source) else s3_client(endpoint_url)
    files, single = _listing(str(source), "", cache_dir, client, None)
    entry = _materialise(files, cache_dir, str(source), client, workers, hardlink)
    return entry / files[0].relative if single else entry


def ingest_many(
    parts: list[tuple[str, str]],
    cache_dir: str | Path,
    *,
    keep: FileFilter | None = None,
    endpoint_url: str | None = None,
    client: Any = None,
    workers: int = 8,
) -> Path:
    """One entry holding each (prefix, source) part's files under its prefix; `keep` filters them."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if client is None and any(is_s3_uri(source) for _, source in parts):
        client = s3_client(endpoint_url)
    files: list[SourceFile] = []
    recorded: dict[str, dict[str, Any]] = {}
    for prefix, source in parts:
        listed, _ = _listing(source, prefix, cache_dir, client, keep)
        files.extend(listed)
        recorded[prefix] = {"source": source, "files": len(listed), "fingerprint": fingerprint(listed)}
    label = " + ".join(source for _, source in parts)
    return _materialise(files, cache_dir, label, client, workers, hardlink=False, extra={"parts": recorded})


def read_ingest_record(root: str | Path) -> dict[str, Any]:
    """Provenance of an ingested root (or of the entry holding an ingested file): source, fingerprint,
    file count and bytes."""
    root = Path(root)
    entry = root if root.is_dir() else root.parent
    return json.loads((entry / RECORD_NAME).read_text())


def _listing(
    source: str, prefix: str, cache_dir: Path, client: Any, keep: FileFilter | None
) -> tuple[list[SourceFile], bool]:
    """The files of `source` under `prefix` in the entry; True when `source` is a single file."""
    if is_s3_uri(source):
        files, single = _s3_listing(source, client)
    else:
        files, single = _local_listing(Path(source), cache_dir)
    if keep is not None:
        files = [item for item in files if keep(item.relative)]
        if not files:
            raise IngestError(f"{source}: no file of the kind wanted here")
    if prefix:
        files = [
            SourceFile(f"{prefix.strip('/')}/{item.relative}", item.size, item.content_id, item.location)
            for item in files
        ]
    return files, single


def _materialise(
    files: list[SourceFile],
    cache_dir: Path,
    label: str,
    client: Any,
    workers: int,
    hardlink: bool,
    extra: dict[str, Any] | None = None,
) -> Path:
    digest = fingerprint(files)
    entry = cache_dir / digest[:FINGERPRINT_CHARS]
    if (entry / RECORD_NAME).is_file():
        return entry
    staging = Path(tempfile.mkdtemp(prefix=f".partial-{entry.name}-", dir=cache_dir))
    try:

        def fetch(item: SourceFile) -> None:
            target = staging / item.relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if is_s3_uri(item.location):
                download_file(client, S3Uri.parse(item.location), target)
                if target.stat().st_size != item.size:
                    raise IngestError(
                        f"{label}: {item.relative} arrived with {target.stat().st_size} bytes, listed {item.size}"
                    )
                return
            if hardlink:
                try:
                    os.link(item.location, target)
                    return
                except OSError:  # another filesystem: fall back to a copy
                    pass
            shutil.copy2(item.location, target)

        _fetch_all(fetch, files, label, workers)
        record = {
            "source": label,
            "fingerprint": digest,
            "files": len(files),
            "bytes": sum(f.size for f in files),
            **(extra or {}),
        }
        (staging / RECORD_NAME).write_text(json.dumps(record, indent=1))
        try:
            staging.rename(entry)
        except OSError:
            if not (entry / RECORD_NAME).is_file():  # another process won the race with a complete entry
                raise
        return entry
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_all(fetch: Callable[[SourceFile], None], files: list[SourceFile], label: str, workers: int) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(fetch, files))
    except (ClientError, BotoCoreError) as exc:
        raise IngestError(f"{label}: download failed ({exc})") from exc


def _local_listing(source: Path, cache_dir: Path) -> tuple[list[SourceFile], bool]:
    """Every non-hidden file under a folder (or the one file), hashed only when its size or mtime changed."""
    if source.is_file():
        paths, root = [source], source.parent
    elif source.is_dir():
        paths, root = _walk(source), source
        if not paths:
            raise IngestError(f"{source}: the directory holds no files")
    else:
        raise IngestError(f"{source}: no such file or directory")
    index_path = cache_dir / HASH_INDEX_NAME
    try:
        index: dict[str, list[Any]] = json.loads(index_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        index = {}
    files = []
    for path in paths:
        stat = path.stat()
        key = str(path.resolve())
        cached = index.get(key)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            content = cached[2]
        else:
            content = sha256_of(path)
            index[key] = [stat.st_size, stat.st_mtime_ns, content]
        files.append(SourceFile(path.relative_to(root).as_posix(), stat.st_size, content, str(path.resolve())))
    write_atomically(index_path, json.dumps(index))
    return files, source.is_file()


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(Path(directory) / name for name in sorted(names) if not name.startswith("."))
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _s3_listing(source: str, client: Any) -> tuple[list[SourceFile], bool]:
    """The objects under a prefix, or the one object a key names."""
    from botocore.exceptions import BotoCoreError, ClientError

    uri = S3Uri.parse(source)
    prefix = uri.key.rstrip("/") + "/" if uri.key.strip("/") else ""
    try:
        objects = list(iter_objects(client, S3Uri(uri.bucket, prefix)))
        single = not objects and bool(uri.key) and not uri.key.endswith("/")
        if single:
            head = client.head_object(Bucket=uri.bucket, Key=uri.key)
            objects = [{"Key": uri.key, "Size": head["ContentLength"], "ETag": head.get("ETag", "")}]
            prefix = uri.key.rsplit("/", 1)[0] + "/" if "/" in uri.key else ""
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            raise IngestError(f"{source}: no objects under this prefix") from exc
        raise IngestError(f"{source}: cannot list objects ({exc})") from exc
    except BotoCoreError as exc:
        raise IngestError(f"{source}: cannot list objects ({exc})") from exc
    files = [
        SourceFile(
            obj["Key"][len(prefix) :],
            int(obj["Size"]),
            str(obj.get("ETag", "")).strip('"'),
            str(S3Uri(uri.bucket, obj["Key"])),
        )
        for obj in objects
        if not obj["Key"].endswith("/") and not PurePosixPath(obj["Key"][len(prefix) :]).name.startswith(".")
    ]
    if not files:
        raise IngestError(f"{source}: no objects under this prefix")
    for item in files:
        if ".." in PurePosixPath(item.relative).parts or item.relative.startswith("/"):
            raise IngestError(f"{source}: object key {item.location!r} would land outside the cache entry")
    return files, single
