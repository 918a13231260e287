"""Raw unlabeled data: image folders and videos gathered into one cached pool, and each image checked.

`build_pool` copies every image of `data.unlabeled.images` (folders or s3:// prefixes, .jpg/.jpeg/.png
found recursively) and the sampled frames of `data.unlabeled.videos` into one content-addressed
cache entry: `images/<i>/<path in folder i>` and `videos/<i>/frame_<n>.jpg`. Its listing is the
pool's fingerprint, and each source's own fingerprint is recorded for the split manifest.

`check_pool` opens every image once: it must decode completely, have a sane size, and not repeat
another by content hash. What fails is listed (file, rule, message) and skipped, or refused with
`data.unlabeled.on_error: fail`. Nothing is dropped without a line in the report.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from components.config import UnlabeledConfig
from components.data.ingest import RECORD_NAME, ingest, ingest_many, read_ingest_record, sha256_of
from components.data.validation import ImageError, Violation, decoded_size
from components.data.video_frames import extract_frames
from components.storage.s3 import is_s3_uri

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
INDEX_NAME = "unlabeled-index.json"


def is_image_name(relative: str) -> bool:
    return PurePosixPath(relative).suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class PoolSource:
    """One configured source as it went into the pool."""

    source: str  # the folder, prefix or video as configured
    kind: str  # "images" or "video"
    prefix: str  # its folder inside the pool
    files: int
    fingerprint: str  # sha256 over its files' names, sizes and content ids


@dataclass(frozen=True)
class UnlabeledPool:
    root: Path  # the cache entry (content-addressed)
    fingerprint: str
    sources: tuple[PoolSource, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "fingerprint": self.fingerprint, "sources": [asdict(s) for s in self.sources]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnlabeledPool:
        return cls(Path(data["root"]), data["fingerprint"], tuple(PoolSource(**s) for s in data["sources"]))


def build_pool(
    unlabeled: UnlabeledConfig, cache_dir: str | Path, *, endpoint_url: str | None = None, client: Any = None
) -> UnlabeledPool | None:
    """The pool of the configured image folders and video frames (None when none is configured)."""
    if not unlabeled.any:
        return None
    cache = Path(cache_dir)
    parts: list[tuple[str, str]] = []
    kinds: dict[str, tuple[str, str]] = {}
    for index, folder in enumerate(unlabeled.images):
        prefix = f"images/{index}"
        parts.append((prefix, folder))
        kinds[prefix] = (folder, "images")
    for index, video in enumerate(unlabeled.videos):
        local = ingest(video, cache / "videos", endpoint_url=endpoint_url, client=client) if is_s3_uri(video) else video
        prefix = f"videos/{index}"
        parts.append((prefix, str(extract_frames(local, unlabeled.fps, cache))))
        kinds[prefix] = (video, "video")
    root = ingest_many(parts, cache / "unlabeled", keep=is_image_name, endpoint_url=endpoint_url, client=client)
    record = read_ingest_record(root)
    sources = tuple(
        PoolSource(kinds[prefix][0], kinds[prefix][1], prefix, part["files"], part["fingerprint"])
        for prefix, part in record["parts"].items()
    )
    return UnlabeledPool(root, record["fingerprint"], sources)


@dataclass(frozen=True)
class PoolImage:
    file_name: str  # relative to the pool root
    width: int
    height: int
    sha256: str


@dataclass(frozen=True)
class PoolCheck:
    usable: list[PoolImage]
    skipped: list[Violation]
    index: Path  # the JSON file both lists are written to

    @property
    def checked(self) -> int:
        return len(self.usable) + len(self.skipped)


def _pool_files(root: Path) -> list[str]:
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.name != RECORD_NAME and is_image_name(path.name)
    )


def _inspect(root: Path, name: str, unlabeled: UnlabeledConfig) -> tuple[PoolImage | None, Violation | None]:
    path = root / name
    try:
        width, height = decoded_size(path)
    except ImageError as exc:
        return None, Violation(name, "unlabeled image", exc.rule, exc.message)
    if min(width, height) < unlabeled.min_side or max(width, height) > unlabeled.max_side:
        rule = "image.too_small" if min(width, height) < unlabeled.min_side else "image.too_large"
        limits = f"sides from {unlabeled.min_side} to {unlabeled.max_side} px"
        return None, Violation(name, "unlabeled image", rule, f"{path} is {width}x{height}; {limits}")
    return PoolImage(name, width, height, sha256_of(path)), None


def check_pool(
    pool: UnlabeledPool, unlabeled: UnlabeledConfig, report_dir: str | Path, workers: int | None = None
) -> PoolCheck:
    """Every pool image decoded and sized; duplicates by content hash after the first (in name order)
    are skipped too. Writes `unlabeled-index.json` (usable and skipped) into `report_dir`."""
    names = _pool_files(pool.root)
    threads = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=threads) as executor:
        inspected = list(executor.map(lambda name: _inspect(pool.root, name, unlabeled), names))
    usable: list[PoolImage] = []
    skipped: list[Violation] = []
    first_of: dict[str, str] = {}
    for image, problem in inspected:
        if problem is not None:
            skipped.append(problem)
            continue
        assert image is not None
        if image.sha256 in first_of:
            skipped.append(
                Violation(
                    image.file_name,
                    "unlabeled image",
                    "image.duplicate",
                    f"the same bytes as {first_of[image.sha256]} (sha256 {image.sha256[:12]})",
                )
            )
            continue
        first_of[image.sha256] = image.file_name
        usable.append(image)
    index = Path(report_dir) / INDEX_NAME
    index.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "pool": pool.as_dict(),
        "usable": [asdict(image) for image in usable],
        "skipped": [asdict(v) for v in skipped],
    }
    index.write_text(json.dumps(payload))
    return PoolCheck(usable, skipped, index)


def read_usable(index: str | Path) -> list[PoolImage]:
    """The usable images `check_pool` listed."""
    return [PoolImage(**item) for item in json.loads(Path(index).read_text())["usable"]]


def source_name(file_name: str, pool: UnlabeledPool) -> str:
    """A pool name as its source knows it: the path inside its image folder, or `<video stem>/frame_n.jpg`."""
    for source in pool.sources:
        if file_name.startswith(source.prefix + "/"):
            inside = file_name[len(source.prefix) + 1 :]
            return inside if source.kind == "images" else f"{PurePosixPath(source.source).stem}/{inside}"
    return file_name

