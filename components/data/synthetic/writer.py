"""Writing synthetic scenes as a COCO person-keypoint dataset, in COCO's own directory layout.

Each image is a pure function of (seed, split, index): its generator is
`np.random.default_rng([seed, split_code, index])`, so the files are byte-identical whatever the
number of worker processes or the order in which they finish.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from components.atomic_files import replaced_atomically
from components.data.synthetic.folder import SYNTHETIC_DESCRIPTION, claim
from components.data.synthetic.scene import render_scene
from components.data.synthetic.style import scene_style
from components.keypoints import COCO_PERSON

SPLIT_CODES = {"train": 0, "val": 1}
IMAGE_ID_STRIDE = 10_000_000  # val image ids start here, so ids stay unique across splits
MAX_PEOPLE_PER_IMAGE = 100  # annotation id = image id * 100 + slot
JPEG_QUALITY = 92
POOL_THRESHOLD = 48  # fewer images than this are not worth starting processes for


@dataclass(frozen=True)
class SynthesisSummary:
    root: Path
    annotation_files: dict[str, Path]
    images: dict[str, int]
    people: dict[str, int]


@dataclass(frozen=True)
class _ImageJob:
    out_dir: str
    split: str
    index: int
    seed: int
    height: int
    width: int
    style: str


def synthesis_info(seed: int, style: str, image_size: tuple[int, int], images: int) -> dict[str, Any]:
    """The `info` block of a synthetic annotation file: what it was drawn with, to tell a stale set."""
    return {
        "description": SYNTHETIC_DESCRIPTION,
        "version": "1",
        "seed": int(seed),
        "style": style,
        "image_size": [int(v) for v in image_size],
        "images": int(images),
    }


def synthesis_settings(
    seed: int, style: str, image_size: tuple[int, int], num_train: int, num_val: int
) -> dict[str, Any]:
    """What a synthetic folder's mark records: the `info` of each split as drawn."""
    return {
        "train": synthesis_info(seed, style, image_size, num_train),
        "val": synthesis_info(seed, style, image_size, num_val),
    }


def image_id_for(split: str, index: int) -> int:
    return SPLIT_CODES[split] * IMAGE_ID_STRIDE + index + 1


def _encode_jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return encoded.tobytes()


def _write_new_file(path: Path, payload: bytes) -> None:
    """Write beside, then rename: a rerun never edits a file in place (caches may hard-link it)."""
    with replaced_atomically(path) as temporary:
        temporary.write_bytes(payload)


def _make_image(job: _ImageJob) -> tuple[dict, list[dict]]:
    """Render, save and label one picture; returns its COCO image record and annotations."""
    rng = np.random.default_rng([job.seed, SPLIT_CODES[job.split], job.index])
    scene = render_scene(rng, job.height, job.width, scene_style(job.style))
    image_id = image_id_for(job.split, job.index)
    file_name = f"{image_id:012d}.jpg"
    _write_new_file(Path(job.out_dir) / job.split / file_name, _encode_jpeg(scene.image))
    annotations = []
    for person in scene.people:
        if not person.annotated:
            continue
        keypoints = person.keypoints
        annotations.append(
            {
                "id": image_id * MAX_PEOPLE_PER_IMAGE + person.slot,
                "image_id": image_id,
                "category_id": COCO_PERSON.category_id,
                "iscrowd": 0,
                "bbox": [float(v) for v in person.bbox],
                "area": float(person.area),
                "num_keypoints": int((keypoints[:, 2] > 0).sum()),
                "keypoints": [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(keypoints.ravel())],
            }
        )
    record = {"id": image_id, "file_name": file_name, "height": job.height, "width": job.width}
    return record, annotations


def _remove_stale_images(split_dir: Path, keep: set[str]) -> None:
    """Delete images of an earlier, larger run (our own 12-digit names only), so the folder matches the JSON."""
    for path in split_dir.glob("[0-9]" * 12 + ".jpg"):
        if path.name not in keep:
            path.unlink()


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _run_jobs(jobs: list[_ImageJob], workers: int) -> Iterator[tuple[dict, list[dict]]]:
    if workers <= 1 or len(jobs) < POOL_THRESHOLD:
        _init_worker()
        yield from map(_make_image, jobs)
        return
    context = multiprocessing.get_context("spawn")  # safe beside threaded libraries (torch, cv2)
    with context.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap(_make_image, jobs, chunksize=16)


def generate_dataset(
    out_dir: str | Path,
    num_train: int,
    num_val: int,
    seed: int = 0,
    image_size: tuple[int, int] = (256, 320),
    workers: int | None = None,
    progress: Callable[[str, int], None] | None = None,
    style: str = "standard",
) -> SynthesisSummary:
    """Write out_dir/annotations/person_keypoints_{train,val}.json and JPEGs under out_dir/{train,val}/.

    `out_dir` must be new, empty or a folder drawn earlier (components/data/synthetic/folder.py): it is
    marked first, so a user's folder is refused before anything is written. `style` names a
    SceneStyle (see style.py). `progress(split, n)` is called after each finished image (for a
    progress bar).
    """
    scene_style(style)
    height, width = (int(v) for v in image_size)
    if num_train < 0 or num_val < 0 or max(num_train, num_val) >= IMAGE_ID_STRIDE:
        raise ValueError(f"image counts must lie in [0, {IMAGE_ID_STRIDE}), got train={num_train} val={num_val}")
    if height < 32 or width < 32:
        raise ValueError(f"image_size must be at least 32x32 pixels, got {height}x{width}")
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    root = claim(out_dir, synthesis_settings(seed, style, (height, width), num_train, num_val))
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    people: dict[str, int] = {}
    counts = {"train": num_train, "val": num_val}
    for split, count in counts.items():
        (root / split).mkdir(exist_ok=True)
        _remove_stale_images(root / split, {f"{image_id_for(split, i):012d}.jpg" for i in range(count)})
        jobs = [_ImageJob(str(root), split, i, seed, height, width, style) for i in range(count)]
        images, annotations = [], []
        for record, anns in _run_jobs(jobs, workers):
            images.append(record)
            annotations.extend(anns)
            if progress is not None:
                progress(split, 1)
        dataset = {
            "info": synthesis_info(seed, style, (height, width), count),
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": [COCO_PERSON.coco_category()],
        }
        path = root / "annotations" / f"person_keypoints_{split}.json"
        _write_new_file(path, json.dumps(dataset, separators=(",", ":")).encode())
        files[split], people[split] = path, len(annotations)
    return SynthesisSummary(root=root, annotation_files=files, images=counts, people=people)
