"""Labeled / unlabeled / held-out split of a COCO training set (the 1K/5K/10K protocol)."""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.atomic_files import write_atomically
from components.config import DataConfig
from components.data.coco_json import CocoWriter, iter_coco
from components.data.unlabeled_pool import PoolImage, UnlabeledPool
from components.errors import TrsPoseError
from components.keypoints import COCO_PERSON, KeypointSetError, category_names, keypoint_category


@dataclass(frozen=True)
class SplitFiles:
    """Everything training reads, as COCO-format files; written by `make_split`.

    `unlabeled_ann` keeps person boxes but carries no keypoints (all zeros, num_keypoints 0).
    `holdout_ann` is a small labeled subset, disjoint from `labeled_ann`, that ranks reviewer
    snapshots. Validation stays untouched. `pool_ann` lists the raw unlabeled images and video
    frames under `pool_images` with their subject boxes (when the run has any).
    """

    labeled_ann: Path
    unlabeled_ann: Path
    holdout_ann: Path
    train_images: Path
    val_ann: Path
    val_images: Path
    manifest: Path
    pool_ann: Path | None = None
    pool_images: Path | None = None

    def unlabeled_sources(self) -> list[tuple[Path, Path]]:
        """Every (annotation file, image folder) of unlabeled people: the labeled file's rest, then the pool."""
        sources = [(self.unlabeled_ann, self.train_images)]
        if self.pool_ann is not None and self.pool_images is not None:
            sources.append((self.pool_ann, self.pool_images))
        return sources


@dataclass(frozen=True)
class PoolInput:
    """The raw unlabeled images a split takes: the pool, its usable images and their subject boxes."""

    pool: UnlabeledPool
    images: list[PoolImage]
    boxes: list[dict[str, Any]]  # {"file_name", "bbox", "score"}, components/data/subject_boxes.py
    provenance: dict[str, Any]  # where the boxes came from (subject_boxes.subject_boxes)
    boxes_file: Path | None = None  # the boxes as one file, hashed into the manifest


class SplitError(TrsPoseError, ValueError):
    """The split cannot be made as configured; the message names the file or setting at fault."""


def coco_layout(root: str | Path, split: str) -> tuple[Path, Path]:
    """COCO's own layout: (root/annotations/person_keypoints_<split>.json, root/<split>/)."""
    root = Path(root)
    return root / "annotations" / f"person_keypoints_{split}.json", root / split


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _scan(train_ann: Path, min_keypoints: int) -> tuple[list[int], set[int], dict[str, Any]]:
    """Image ids in file order; those with a non-crowd person carrying at least `min_keypoints`
    labeled keypoints; and the small top-level values (info, licenses, categories)."""
    image_ids: list[int] = []
    keypointed: set[int] = set()
    header: dict[str, Any] = {}
    for entry in iter_coco(train_ann):
        record = entry.value
        if entry.index is None:
            header[entry.key] = record
        elif entry.key == "images":
            image_ids.append(int(record["id"]))
        elif entry.key == "annotations" and not record.get("iscrowd", 0) and record.get("num_keypoints", 0) >= min_keypoints:
            keypointed.add(int(record["image_id"]))
    return image_ids, keypointed, header


def _choose(eligible: list[int], data_cfg: DataConfig, source: Path) -> tuple[list[int], list[int]]:
    """(labeled, holdout) ids by seed. Holdout is the permutation's tail and labeled its head, so
    with one seed a 1K subset lies inside the 5K one and the holdout does not move with N."""
    count = data_cfg.num_labeled
    holdout = data_cfg.holdout_labeled
    if count is None:
        assert data_cfg.labeled_fraction is not None  # DataConfig requires one of the two
        # a fraction (1.0: "all my labels") leaves the holdout its images
        count = min(max(1, round(data_cfg.labeled_fraction * len(eligible))), max(1, len(eligible) - holdout))
    if count + holdout > len(eligible):
        raise SplitError(
            f"{source}: only {len(eligible)} images have a person with keypoints, fewer than "
            f"data.num_labeled/labeled_fraction ({count}) + data.holdout_labeled ({holdout})"
        )
    order = np.random.default_rng(data_cfg.split_seed).permutation(np.asarray(sorted(eligible), dtype=np.int64))
    labeled = sorted(int(i) for i in order[:count])
    held = sorted(int(i) for i in order[len(order) - holdout :]) if holdout else []
    return labeled, held


def _detections(path: Path, image_ids: set[int], min_score: float, category_id: int) -> dict[int, list[dict[str, Any]]]:
    """Person detections per unlabeled image, from a COCO detection-results list."""
    try:
        detections = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SplitError(f"{path}: data.unlabeled_boxes names a file that does not exist") from exc
    except json.JSONDecodeError as exc:
        raise SplitError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(detections, list):
        raise SplitError(f"{path}: a detection-results file is a JSON list of {{image_id, category_id, bbox, score}}")
    per_image: dict[int, list[dict[str, Any]]] = {}
    for index, det in enumerate(detections):
        try:
            image_id, category, score = int(det["image_id"]), int(det.get("category_id", category_id)), float(det["score"])
            x, y, w, h = (float(v) for v in det["bbox"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SplitError(f"{path}: detection [{index}] needs image_id, bbox [x,y,w,h] and score ({exc})") from exc
        if not all(np.isfinite((x, y, w, h, score))):
            raise SplitError(f"{path}: detection [{index}] has a non-finite bbox or score")
        if category == category_id and score >= min_score and w > 0 and h > 0 and image_id in image_ids:
            per_image.setdefault(image_id, []).append({"bbox": [x, y, w, h], "score": score})
    return per_image


def _unlabeled_annotation(record: dict[str, Any], num_keypoints: int) -> dict[str, Any]:
    """The same person with its keypoints removed: the box stays, the labels go."""
    stripped = dict(record)
    stripped["keypoints"] = [0] * (num_keypoints * 3)
    stripped["num_keypoints"] = 0
    return stripped


def _keypoint_count(header: dict[str, Any], source: Path) -> tuple[int, int]:
    """(K, category id) of the file's keypoint category (COCO's person when it lists no categories)."""
    if "categories" not in header:
        return COCO_PERSON.num_keypoints, COCO_PERSON.category_id
    try:
        category = keypoint_category(header["categories"], str(source))
        return len(category_names(category, str(source))), int(category.get("id", 1))
    except KeypointSetError as exc:
        raise SplitError(str(exc)) from None


def make_split(
    train_ann: str | Path,
    train_images: str | Path,
    val_ann: str | Path,
    val_images: str | Path,
    out_dir: str | Path,
    data_cfg: DataConfig,
    pool: PoolInput | None = None,
) -> SplitFiles:
    """Write labeled.json, holdout.json and unlabeled.json (COCO format) and manifest.json, and
    unlabeled_pool.json for raw unlabeled images (`pool`).

    Labeled and holdout images are drawn by `data_cfg.split_seed` from the images with at least one
    labeled person; every other training image is unlabeled, carrying ground-truth person boxes or,
    when `data_cfg.unlabeled_boxes` names a detection-results file, detector boxes scoring at least
    data.unlabeled_min_score. Files are streamed, so a full COCO train set fits in little memory.
    """
    train_ann, train_images, val_ann, val_images = (Path(p) for p in (train_ann, train_images, val_ann, val_images))
    out_dir = Path(out_dir)
    for path in (train_ann, val_ann):
        if not path.is_file():
            raise SplitError(f"{path}: annotation file does not exist")
    try:
        image_ids, keypointed, header = _scan(train_ann, max(1, data_cfg.min_keypoints))
    except (KeyError, TypeError, ValueError) as exc:
        raise SplitError(f"{train_ann}: cannot read a record ({exc!r}); run `trs-pose data validate` on it first") from exc
    num_keypoints, category_id = _keypoint_count(header, train_ann)
    labeled, holdout = _choose([i for i in image_ids if i in keypointed], data_cfg, train_ann)
    labeled_set, holdout_set = set(labeled), set(holdout)
    unlabeled = [i for i in image_ids if i not in labeled_set and i not in holdout_set]
    detections = None
    if data_cfg.unlabeled_boxes != "ground_truth":
        detections = _detections(
            Path(data_cfg.unlabeled_boxes), set(unlabeled), data_cfg.unlabeled_min_score, category_id
        )

    paths = {name: out_dir / f"{name}.json" for name in ("labeled", "holdout", "unlabeled")}
    subset_of: dict[int, str] = {i: "labeled" for i in labeled} | {i: "holdout" for i in holdout}
    subset_of |= {i: "unlabeled" for i in unlabeled}
    with ExitStack() as stack:
        writers = {name: stack.enter_context(CocoWriter(path, header)) for name, path in paths.items()}
        next_id = 0
        for entry in iter_coco(train_ann):
            if entry.index is None:
                continue
            record = entry.value
            if entry.key == "images":
                writers[subset_of[int(record["id"])]].add("images", record)
            elif entry.key == "annotations":
                next_id = max(next_id, int(record["id"]) + 1)
                subset = subset_of.get(int(record["image_id"]))
                if subset is None:
                    continue
                if subset != "unlabeled":
                    writers[subset].add("annotations", record)
                elif detections is None:
                    writers[subset].add("annotations", _unlabeled_annotation(record, num_keypoints))
        if detections is not None:
            for image_id in unlabeled:
                for det in detections.get(image_id, []):
                    x, y, w, h = det["bbox"]
                    writers["unlabeled"].add("annotations", {
                        "id": next_id, "image_id": image_id, "category_id": category_id, "bbox": [x, y, w, h],
                        "area": w * h, "iscrowd": 0, "keypoints": [0] * (num_keypoints * 3), "num_keypoints": 0,
                        "score": det["score"],
                    })  # fmt: skip
                    next_id += 1
        counts = {name: dict(writer.counts) for name, writer in writers.items()}

    pool_ann = None
    if pool is not None:
        pool_ann = _write_pool(out_dir / "unlabeled_pool.json", header, pool, num_keypoints, category_id)
        counts["pool"] = {"images": len(pool.images), "annotations": len(pool.boxes)}
    split = SplitFiles(
        labeled_ann=paths["labeled"],
        unlabeled_ann=paths["unlabeled"],
        holdout_ann=paths["holdout"],
        train_images=train_images,
        val_ann=val_ann,
        val_images=val_images,
        manifest=out_dir / "manifest.json",
        pool_ann=pool_ann,
        pool_images=pool.pool.root if pool is not None else None,
    )
    ids = {"labeled": labeled, "holdout": holdout, "unlabeled": unlabeled}
    _write_manifest(split, train_ann, data_cfg, ids, counts, pool)
    return split


def _write_pool(
    path: Path, header: dict[str, Any], pool: PoolInput, num_keypoints: int, category_id: int
) -> Path:
    """The pool's usable images and their boxes as a COCO file of the labeled set's category, no keypoints."""
    image_ids = {image.file_name: index for index, image in enumerate(pool.images, start=1)}
    with CocoWriter(path, {key: value for key, value in header.items() if key != "info"}) as writer:
        for image in pool.images:
            writer.add("images", {
                "id": image_ids[image.file_name], "file_name": image.file_name, "width": image.width,
                "height": image.height, "sha256": image.sha256,
            })  # fmt: skip
        for ann_id, box in enumerate(pool.boxes, start=1):
            x, y, w, h = (float(v) for v in box["bbox"])
            writer.add("annotations", {
                "id": ann_id, "image_id": image_ids[box["file_name"]], "category_id": category_id, "bbox": [x, y, w, h],
                "area": w * h, "iscrowd": 0, "keypoints": [0] * (num_keypoints * 3), "num_keypoints": 0,
                "score": float(box["score"]),
            })  # fmt: skip
    return path


def _write_manifest(
    split: SplitFiles,
    train_ann: Path,
    data_cfg: DataConfig,
    ids: dict[str, list[int]],
    counts: dict[str, dict[str, int]],
    pool: PoolInput | None,
) -> None:
    """What a run trained on, provably: seed, settings, ids per subset, every file's sha256, and every
    unlabeled source with its fingerprint (each pool image's sha256 is in unlabeled_pool.json)."""
    inputs = {"train_ann": train_ann, "val_ann": split.val_ann}
    if data_cfg.unlabeled_boxes != "ground_truth":
        inputs["unlabeled_boxes"] = Path(data_cfg.unlabeled_boxes)
    if pool is not None and pool.boxes_file is not None:
        inputs["pool_boxes"] = pool.boxes_file
    outputs = {"labeled_ann": split.labeled_ann, "holdout_ann": split.holdout_ann, "unlabeled_ann": split.unlabeled_ann}
    if split.pool_ann is not None:
        outputs["pool_ann"] = split.pool_ann
    manifest: dict[str, Any] = {
        "seed": data_cfg.split_seed,
        "data_config": data_cfg.model_dump(mode="json"),
        "train_images": str(split.train_images),
        "val_images": str(split.val_images),
        "counts": {name: {"images": len(ids[name]), "annotations": counts[name].get("annotations", 0)} for name in ids},
        "image_ids": ids,
        "inputs": {name: {"path": str(path), "sha256": sha256_file(path)} for name, path in inputs.items()},
        "outputs": {name: {"path": str(path), "sha256": sha256_file(path)} for name, path in outputs.items()},
    }
    if pool is not None:
        manifest["counts"]["pool"] = counts["pool"]
        manifest["pool_images"] = str(pool.pool.root)
        manifest["unlabeled_sources"] = {
            "fingerprint": pool.pool.fingerprint,
            "boxes": pool.provenance,
            "sources": [asdict(source) for source in pool.pool.sources],
        }
    write_atomically(split.manifest, json.dumps(manifest, indent=1))


def read_split(split_dir: str | Path) -> SplitFiles:
    """The SplitFiles that `make_split` wrote into `split_dir`, read back from its manifest."""
    manifest_path = Path(split_dir) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        outputs, inputs = manifest["outputs"], manifest["inputs"]
        split = SplitFiles(
            labeled_ann=Path(outputs["labeled_ann"]["path"]),
            unlabeled_ann=Path(outputs["unlabeled_ann"]["path"]),
            holdout_ann=Path(outputs["holdout_ann"]["path"]),
            train_images=Path(manifest["train_images"]),
            val_ann=Path(inputs["val_ann"]["path"]),
            val_images=Path(manifest["val_images"]),
            manifest=manifest_path,
            pool_ann=Path(outputs["pool_ann"]["path"]) if "pool_ann" in outputs else None,
            pool_images=Path(manifest["pool_images"]) if "pool_images" in manifest else None,
        )
    except FileNotFoundError as exc:
        raise SplitError(f"{manifest_path}: no split manifest; make one with `trs-pose data split`") from exc
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise SplitError(f"{manifest_path}: not a split manifest ({exc!r})") from exc
    missing = [str(p) for p in (split.labeled_ann, split.unlabeled_ann, split.holdout_ann) if not p.is_file()]
    if missing:
        raise SplitError(f"{manifest_path}: the split's files are missing: {', '.join(missing)}")
    return split
