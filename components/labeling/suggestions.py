"""Which images to label next: the most unsure first, one image for each scene.

An image is as unsure as its most unsure person (components/labeling/uncertainty.py). Images are
taken best first, N images rather than N people; an image whose difference hash (dHash: 64 bits of
brightness gradients on a 9x8 thumbnail) lies within `near_duplicate_bits` of one already taken
stands for the same scene and is left out, so N frames of one video shot are one suggestion.
Each suggestion says where the user has the image: the labeled data's own folder for the unlabeled
part of the labeled file, the configured folder or s3:// prefix for raw images, `VIDEO#frame=N`
for a video frame.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from components.config import DataConfig
from components.data.sources import data_sources
from components.data.split import SplitFiles
from components.labeling.uncertainty import PersonScore

NEAR_DUPLICATE_BITS = 8  # of 64: dHashes this close are the same scene (16 would merge unrelated images)


@dataclass
class ImageSuggestion:
    image_path: Path  # the local (cached) copy
    task_name: str  # its file_name in the labeling task, and in the labels that come back
    origin: str  # where the user has it
    score: float
    people: list[PersonScore]
    stands_for: list[str] = field(default_factory=list)  # near-duplicates left out for it (task names)


def dhash(path: Path) -> int:
    """64-bit difference hash of an image (0 for one that cannot be read)."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return 0
    thumb = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (thumb[:, 1:] > thumb[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


Origin = Callable[[Path], tuple[str, str]]  # local image -> (task name, where the user has it)


def split_origins(split: SplitFiles) -> Origin:
    """Names and origins of a split's unlabeled images, read from its manifest."""
    manifest = json.loads(Path(split.manifest).read_text())
    train_images = Path(split.train_images).resolve()
    labeled_origin = data_sources(DataConfig.model_validate(manifest["data_config"])).train_images
    pool_root = Path(split.pool_images).resolve() if split.pool_images is not None else None
    sources = {s["prefix"]: s for s in (manifest.get("unlabeled_sources") or {}).get("sources", [])}

    def join(base: str, relative: str) -> str:
        return f"{base.rstrip('/')}/{relative}"

    def origin(path: Path) -> tuple[str, str]:
        resolved = path.resolve()
        if pool_root is not None and resolved.is_relative_to(pool_root):
            inside = PurePosixPath(resolved.relative_to(pool_root).as_posix())
            prefix, rest = "/".join(inside.parts[:2]), "/".join(inside.parts[2:])
            source = sources.get(prefix, {"source": prefix, "kind": "images"})
            stem = PurePosixPath(source["source"].rstrip("/")).stem
            if source["kind"] == "video":
                frame = int(PurePosixPath(rest).stem.removeprefix("frame_"))
                return f"{stem}/{rest}", f"{source['source']}#frame={frame}"
            return f"{stem}/{rest}", join(source["source"], rest)
        relative = resolved.relative_to(train_images).as_posix() if resolved.is_relative_to(train_images) else path.name
        return relative, join(labeled_origin, relative)

    return origin


def pick_images(
    people: Sequence[PersonScore], budget: int, origin: Origin, near_duplicate_bits: int = NEAR_DUPLICATE_BITS
) -> list[ImageSuggestion]:
    """Up to `budget` images, most unsure first, without near-duplicates of one already taken."""
    by_image: dict[Path, list[PersonScore]] = {}
    for person in people:
        by_image.setdefault(person.record.image_path, []).append(person)
    candidates = []
    for path, scored in by_image.items():
        task_name, where = origin(path)
        candidates.append(ImageSuggestion(path, task_name, where, max(p.score for p in scored), scored))
    candidates.sort(key=lambda s: (-s.score, s.task_name))
    taken: list[tuple[int, ImageSuggestion]] = []
    for candidate in candidates:
        if len(taken) == budget:
            break
        signature = dhash(candidate.image_path)
        twin = next((s for h, s in taken if hamming(h, signature) <= near_duplicate_bits), None)
        if twin is not None:
            twin.stands_for.append(candidate.task_name)
            continue
        taken.append((signature, candidate))
    return [suggestion for _, suggestion in taken]
