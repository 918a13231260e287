"""Structural validation of a COCO person-keypoint set, plus the statistical suite's verdict.

Every broken rule becomes a `Violation` naming the file, the record (image or annotation id) and
the rule, so a user sees all problems at once instead of the first traceback. The file is read
as a stream (components.data.coco_json): per-record checks run as records arrive, and only a few
numbers per annotation are kept for the cross-record checks (unique ids, image listed, inside the
image), which then run vectorised. Each image is opened once, however many people it holds.

Tolerances (real COCO has these quirks): labeled keypoints and box corners may lie up to
`BOUNDS_TOLERANCE` pixels outside [0, width] x [0, height]; crowd annotations (iscrowd=1) carry
no keypoints and RLE masks, so only their ids, image and box are checked, as COCO's own tools do.
"""

from __future__ import annotations

import json
import math
import os
from array import array
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from components.config import KeypointsConfig
from components.data.coco_json import CocoJsonError, iter_coco
from components.errors import TrsPoseError
from components.keypoints import KeypointSet, KeypointSetError, category_names, keypoint_category

BOUNDS_TOLERANCE = 1.0  # pixels
VISIBILITY_VALUES = (0, 1, 2)
REQUIRED_TOP_LEVEL = ("images", "annotations", "categories")


@dataclass(frozen=True)
class Violation:
    file: str
    record: str  # "image 42", "annotation 7", "categories[0]", "<file>", "expectation ..."
    rule: str  # dotted rule name, e.g. "keypoints.visibility"
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.record}: [{self.rule}] {self.message}"


@dataclass
class ValidationReport:
    """What the validate step returns; `ok` is False when any structural or statistical rule broke.

    `keypoints` is the file's keypoint set (with the config's options) when its category is usable."""

    ok: bool
    violations: list[Violation]
    stats: dict[str, Any]
    report_path: Path | None = None
    expectations: dict[str, Any] = field(default_factory=dict)
    keypoints: KeypointSet | None = None

    def rules(self) -> set[str]:
        return {v.rule for v in self.violations}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    """An integer that fits the int64 columns the cross-record checks use."""
    return _is_int(value) and -(2**63) <= value < 2**63


_NUMBER_TYPES = frozenset({int, float})


def _finite(value: int | float) -> bool:
    """math.isfinite, also for integers too large for a float (they are not usable coordinates)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Collector:
    """Gathers violations and the compact per-record columns the cross-record checks need."""

    def __init__(self, file: Path) -> None:
        self.file = str(file)
        self.violations: list[Violation] = []
        self.image_ids: list[int] = []
        self.image_sizes: list[tuple[int, int]] = []  # (width, height)
        self.image_files: list[str] = []
        self.ann_ids = array("q")
        self.ann_rows = array("d")  # flat, len(ANN_COLUMNS) values per annotation: 8 bytes a number
        self.categories: Any = None
        self.top_level_keys: set[str] = set()
        self.kp_counts = array("q")  # keypoints of each annotation in ann_ids, judged against the category at the end
        self.joint_names: tuple[str, ...] | None = None
        self._named_later: list[tuple[int, list[int], str, list[str]]] = []  # (violation, joints, prefix, values)

    def add(self, record: str, rule: str, message: str) -> None:
        self.violations.append(Violation(self.file, record, rule, message))

    def add_per_joint(self, record: str, rule: str, prefix: str, joints: list[int], values: list[str]) -> None:
        """A violation naming joints: by name once the categories are read (COCO puts them last)."""
        self._named_later.append((len(self.violations), joints, prefix, values))
        self.add(record, rule, self._joint_message(prefix, joints, values))

    def _joint_message(self, prefix: str, joints: list[int], values: list[str]) -> str:
        def label(i: int) -> str:
            return self.joint_names[i] if self.joint_names is not None and i < len(self.joint_names) else f"keypoint {i}"

        parts = [label(i) + value for i, value in zip(joints, values)]
        return prefix + ", ".join(sorted(parts) if not any(values) else parts)

    def name_joints(self) -> None:
        """Re-word the per-joint violations with the names the categories gave."""
        for position, joints, prefix, values in self._named_later:
            old = self.violations[position]
            self.violations[position] = Violation(old.file, old.record, old.rule, self._joint_message(prefix, joints, values))

    def set_categories(self, categories: Any) -> None:
        self.categories = categories
        try:
            names = category_names(keypoint_category(categories, self.file), self.file)
        except KeypointSetError:
            return  # reported by _check_categories
        self.joint_names = names

    def image(self, entry_index: int, image: Any, nonstandard: tuple[str, ...]) -> None:
        name = f"image {image['id']}" if isinstance(image, dict) and _is_int(image.get("id")) else f"images[{entry_index}]"
        if nonstandard:
            self.add(name, "json.non_finite", f"contains the non-standard JSON constant(s) {', '.join(sorted(set(nonstandard)))}")
        if not isinstance(image, dict):
            self.add(name, "schema.type", f"an image must be an object, got {type(image).__name__}")
            return
        problems = False
        for key, check, wanted in (
            ("id", _is_id, "a 64-bit integer"),
            ("file_name", lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
            ("width", lambda v: _is_int(v) and v > 0, "a positive integer"),
            ("height", lambda v: _is_int(v) and v > 0, "a positive integer"),
        ):
            if key not in image:
                self.add(name, "schema.missing_key", f"image has no {key!r}")
                problems = True
            elif not check(image[key]):
                self.add(name, "schema.type", f"{key!r} must be {wanted}, got {image[key]!r}")
                problems = True
        if not problems:
            self.image_ids.append(image["id"])
            self.image_sizes.append((image["width"], image["height"]))
            self.image_files.append(image["file_name"])

    def annotation(self, entry_index: int, ann: Any, nonstandard: tuple[str, ...]) -> None:
        name = f"annotation {ann['id']}" if isinstance(ann, dict) and _is_int(ann.get("id")) else f"annotations[{entry_index}]"
        if nonstandard:
            self.add(name, "json.non_finite", f"contains the non-standard JSON constant(s) {', '.join(sorted(set(nonstandard)))}")
        if not isinstance(ann, dict):
            self.add(name, "schema.type", f"an annotation must be an object, got {type(ann).__name__}")
            return
        ok = True
        for key in ("id", "image_id", "category_id"):
            if key not in ann:
                self.add(name, "schema.missing_key", f"annotation has no {key!r}")
                ok = False
            elif not _is_id(ann[key]):
                self.add(name, "schema.type", f"{key!r} must be a 64-bit integer, got {ann[key]!r}")
                ok = False
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, bool):
            self.add(name, "schema.type", f"'iscrowd' must be 0 or 1, got {crowd!r}")
            ok, crowd = False, 0
        box = self._bbox(name, ann)
        area = ann.get("area")
        if area is None:
            self.add(name, "schema.missing_key", "annotation has no 'area'")
            ok = False
        elif not _is_number(area) or not _finite(area):
            self.add(name, "area.invalid", f"'area' must be a finite number, got {area!r}")
            ok = False
        elif area <= 0:
            self.add(name, "area.non_positive", f"'area' must be > 0, got {area!r}")
        keypoints = None if crowd else self._keypoints(name, ann)
        if not ok or box is None or area is None or (keypoints is None and not crowd):
            return
        if keypoints is None:
            keypoints = np.zeros((0, 3))
        visibility = keypoints[:, 2]
        labeled = keypoints[visibility > 0]
        if len(labeled):
            lo, hi = labeled[:, :2].min(axis=0), labeled[:, :2].max(axis=0)
        else:
            lo = hi = np.zeros(2)
        counts = np.bincount(visibility.astype(np.int64), minlength=len(VISIBILITY_VALUES)).tolist()
        self.ann_ids.append(ann["id"])
        self.kp_counts.append(-1 if crowd else len(keypoints))
        self.ann_rows.extend(
            (ann["image_id"], ann["category_id"], crowd, *box, float(area), lo[0], lo[1], hi[0], hi[1], *counts)
        )

    def _bbox(self, name: str, ann: dict[str, Any]) -> tuple[float, float, float, float] | None:
        box = ann.get("bbox")
        if box is None:
            self.add(name, "schema.missing_key", "annotation has no 'bbox'")
            return None
        if not isinstance(box, list) or len(box) != 4 or not set(map(type, box)) <= _NUMBER_TYPES:
            self.add(name, "bbox.shape", f"'bbox' must be 4 numbers [x, y, w, h], got {box!r}")
            return None
        if not all(_finite(v) for v in box):
            self.add(name, "bbox.non_finite", f"'bbox' has a non-finite value: {box!r}")
            return None
        x, y, w, h = (float(v) for v in box)
        if w <= 0 or h <= 0:
            self.add(name, "bbox.non_positive", f"bbox width and height must be > 0, got w={w:g}, h={h:g}")
        if x < -BOUNDS_TOLERANCE or y < -BOUNDS_TOLERANCE:
            self.add(name, "bbox.negative", f"bbox corner ({x:g}, {y:g}) is negative")
        return x, y, w, h

    def _keypoints(self, name: str, ann: dict[str, Any]) -> np.ndarray | None:
        raw = ann.get("keypoints")
        if raw is None:
            self.add(name, "schema.missing_key", "a non-crowd person annotation has no 'keypoints'")
            return None
        if not isinstance(raw, list) or not raw or len(raw) % 3:
            length = f"{len(raw)} numbers" if isinstance(raw, list) else type(raw).__name__
            self.add(name, "keypoints.shape", f"'keypoints' must be a list of (x, y, v) triples, got {length}")
            return None
        k = len(raw) // 3  # judged against the category's count once it is read (COCO lists it last)
        if not set(map(type, raw)) <= _NUMBER_TYPES:  # one pass over types: the hot loop on 250k people
            bad = next(v for v in raw if not _is_number(v))
            self.add(name, "keypoints.type", f"'keypoints' must hold only numbers, found {bad!r}")
            return None
        try:
            keypoints = np.asarray(raw, dtype=np.float64).reshape(k, 3)
        except OverflowError:
            keypoints = np.asarray([v if _finite(v) else np.inf for v in raw], dtype=np.float64).reshape(k, 3)
        finite = np.isfinite(keypoints)
        if not finite.all():
            joints = sorted({int(i) for i in np.nonzero(~finite)[0]})
            self.add_per_joint(name, "keypoints.non_finite", "non-finite keypoint values at ", joints, [""] * len(joints))
            return None
        visibility = keypoints[:, 2]
        bad_vis = (visibility != 0) & (visibility != 1) & (visibility != 2)
        if bad_vis.any():
            joints = [int(i) for i in np.nonzero(bad_vis)[0]]
            values = [f"={visibility[i]:g}" for i in joints]
            self.add_per_joint(name, "keypoints.visibility", "visibility must be 0, 1 or 2: ", joints, values)
            return None
        labeled = int(np.count_nonzero(visibility > 0))
        declared = ann.get("num_keypoints")
        if declared is None:
            self.add(name, "schema.missing_key", "a non-crowd person annotation has no 'num_keypoints'")
        elif not _is_int(declared) or declared != labeled:
            self.add(name, "num_keypoints.mismatch", f"'num_keypoints' is {declared!r} but {labeled} keypoints are labeled")
        return keypoints


ANN_COLUMNS = (
    "image_id", "category_id", "iscrowd", "x", "y", "w", "h", "area",
    "kp_min_x", "kp_min_y", "kp_max_x", "kp_max_y", "n_v0", "n_v1", "n_v2",
)  # fmt: skip


def _check_categories(collector: _Collector, options: KeypointsConfig | None) -> tuple[set[int], KeypointSet | None]:
    """The one keypoint category (any name, any keypoints) completed by the config's `options`; returns the
    ids annotations may use and the keypoint set, None when the category is unusable."""
    from components.data.keypoint_category import keypoints_from_category

    categories = collector.categories
    if not isinstance(categories, list):
        collector.add("categories", "schema.type", f"'categories' must be a list, got {type(categories).__name__}")
        return set(), None
    ids: set[int] = set()
    for index, category in enumerate(categories):
        if not isinstance(category, dict) or not _is_int(category.get("id")):
            collector.add(f"categories[{index}]", "schema.type", "a category must be an object with an integer 'id'")
            continue
        ids.add(category["id"])
    try:
        category = keypoint_category(categories, collector.file)
    except KeypointSetError as exc:
        collector.add("categories", "category.keypoints", str(exc).removeprefix(f"{collector.file}: "))
        return ids, None
    record = f"category {category.get('id')}"
    try:
        keypoints = keypoints_from_category(options or KeypointsConfig(), category, collector.file).keypoint_set()
    except KeypointSetError as exc:
        collector.add(record, "category.keypoint_set", str(exc).removeprefix(f"{collector.file}: "))
        return ids, None
    return ids, keypoints


def _check_keypoint_counts(collector: _Collector, keypoints: KeypointSet | None) -> None:
    """Every person's keypoints against the category's count (vectorised; the counts were kept as read).
    Without a usable category, the count most annotations hold is the reference."""
    counts = np.frombuffer(collector.kp_counts, dtype=np.int64) if collector.kp_counts else np.zeros(0, np.int64)
    people = counts >= 0
    if not people.any():
        return
    if keypoints is not None:
        expected, why = keypoints.num_keypoints, f"the keypoint category lists {keypoints.num_keypoints}"
    else:
        values, frequency = np.unique(counts[people], return_counts=True)
        expected, why = int(values[frequency.argmax()]), "as most annotations hold"
    ann_ids = np.frombuffer(collector.ann_ids, dtype=np.int64)
    wrong = np.nonzero(people & (counts != expected))[0]
    if keypoints is not None and len(wrong) == int(people.sum()):
        collector.add(
            f"category {keypoints.category_id}",
            "category.keypoint_count",
            f"the category lists {expected} keypoints but every annotation holds another count "
            f"(annotation {ann_ids[wrong[0]]}: {counts[wrong[0]]})",
        )
        return
    for i in wrong:
        collector.add(
            f"annotation {ann_ids[i]}",
            "keypoints.shape",
            f"'keypoints' must be {expected}x3 = {expected * 3} numbers ({why}), got {counts[i] * 3}",
        )


def _duplicates(values: np.ndarray) -> list[tuple[int, int]]:
    """(value, count) for every value that occurs more than once."""
    unique, counts = np.unique(values, return_counts=True)
    repeated = counts > 1
    return list(zip(unique[repeated].tolist(), counts[repeated].tolist()))


def _cross_checks(collector: _Collector, category_ids: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised checks across records; returns the annotation table and each row's image size."""
    image_ids = np.asarray(collector.image_ids, dtype=np.int64)
    sizes = np.asarray(collector.image_sizes, dtype=np.float64).reshape(-1, 2)
    for dup, count in _duplicates(image_ids):
        collector.add(f"image {dup}", "images.duplicate_id", f"image id {dup} is listed {count} times")
    ann_ids = np.frombuffer(collector.ann_ids, dtype=np.int64) if collector.ann_ids else np.zeros(0, np.int64)
    for dup, count in _duplicates(ann_ids):
        collector.add(f"annotation {dup}", "annotations.duplicate_id", f"annotation id {dup} appears {count} times")
    table = (np.frombuffer(collector.ann_rows, dtype=np.float64) if collector.ann_rows else np.zeros(0)).reshape(-1, len(ANN_COLUMNS))
    col = {name: table[:, i] for i, name in enumerate(ANN_COLUMNS)}

    order = np.argsort(image_ids, kind="stable")
    ann_image = col["image_id"].astype(np.int64)
    where = np.searchsorted(image_ids[order], ann_image)
    where = np.clip(where, 0, max(len(order) - 1, 0))
    listed = (image_ids[order][where] == ann_image) if len(order) else np.zeros(len(ann_ids), dtype=bool)
    for i in np.nonzero(~listed)[0]:
        collector.add(f"annotation {ann_ids[i]}", "annotation.image_unlisted", f"image_id {ann_image[i]} is not in 'images'")
    if category_ids:
        for i in np.nonzero(~np.isin(col["category_id"], list(category_ids)))[0]:
            collector.add(f"annotation {ann_ids[i]}", "annotation.category_unknown", f"category_id {int(col['category_id'][i])} is not in 'categories'")

    size = np.full((len(ann_ids), 2), np.nan)
    size[listed] = sizes[order][where[listed]]
    width, height = size[:, 0], size[:, 1]
    tol = BOUNDS_TOLERANCE
    box_out = listed & ((col["x"] + col["w"] > width + tol) | (col["y"] + col["h"] > height + tol))
    for i in np.nonzero(box_out)[0]:
        collector.add(
            f"annotation {ann_ids[i]}",
            "bbox.outside_image",
            f"bbox [{col['x'][i]:g}, {col['y'][i]:g}, {col['w'][i]:g}, {col['h'][i]:g}] extends past the "
            f"{int(width[i])}x{int(height[i])} image of image {ann_image[i]}",
        )
    has_labels = (col["n_v1"] + col["n_v2"]) > 0
    kp_out = listed & has_labels & (
        (col["kp_min_x"] < -tol) | (col["kp_min_y"] < -tol) | (col["kp_max_x"] > width + tol) | (col["kp_max_y"] > height + tol)
    )
    for i in np.nonzero(kp_out)[0]:
        collector.add(
            f"annotation {ann_ids[i]}",
            "keypoints.outside_image",
            f"labeled keypoints span x [{col['kp_min_x'][i]:g}, {col['kp_max_x'][i]:g}], y [{col['kp_min_y'][i]:g}, "
            f"{col['kp_max_y'][i]:g}], outside the {int(width[i])}x{int(height[i])} image {ann_image[i]}",
        )
    return table, size


class ImageError(TrsPoseError, ValueError):
    """An image that is missing or does not decode completely; the message names the file and the rule."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule, self.message = rule, message
        super().__init__(f"{message} (rule {rule})")


def _decode(path: Path, draft: bool) -> tuple[tuple[int, int], Any]:
    """((width, height), PIL image) of a file that decodes to its last byte, else ImageError (the one rule
    `data validate` and `predict` share: a truncated JPEG is corrupt, never padded with grey)."""
    from PIL import Image

    if path.is_dir():
        raise ImageError("image.not_a_file", f"{path} is a directory, not an image file")
    if not path.is_file():
        raise ImageError("image.missing_file", f"{path} does not exist")
    try:
        with Image.open(path) as image:
            size = image.size
            if draft:
                image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
            return size, image.convert("RGB")
    except Exception as exc:  # PIL raises many types for corrupt data; each is the same finding
        raise ImageError("image.corrupt", f"{path} does not decode: {exc}") from exc


def decoded_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image that decodes completely (JPEGs in draft mode), else ImageError."""
    return _decode(Path(path), draft=True)[0]


def load_rgb(path: str | Path) -> NDArray[np.uint8]:
    """The image as HxWx3 RGB uint8, under the same rule as `check_image`, turned upright by its EXIF
    orientation as OpenCV's reader (the training datasets') does."""
    from PIL import ImageOps

    return np.asarray(ImageOps.exif_transpose(_decode(Path(path), draft=False)[1]), dtype=np.uint8)


def missing_images(image_dir: str | Path, file_names: Iterable[str | Path]) -> list[Path]:
    """The listed files that are not regular files under `image_dir` (a wrong --images shows at once,
    not as a data-loader failure halfway through inference)."""
    return [Path(image_dir) / name for name in file_names if not (Path(image_dir) / name).is_file()]


def check_image(path: Path, width: int, height: int) -> tuple[str, str] | None:
    """(rule, message) when the image is missing, corrupt or of another size than listed, else None.

    JPEGs decode in draft mode (DCT scaling to about 1/8), which still reads the whole stream, so a
    truncated file fails while a full-size decode is avoided.
    """
    try:
        actual, _ = _decode(path, draft=True)
    except ImageError as exc:
        return exc.rule, exc.message
    if actual != (width, height):
        return "image.size_mismatch", f"{path} is {actual[0]}x{actual[1]}, the JSON says {width}x{height}"
    return None


def _check_images(collector: _Collector, image_dir: Path, workers: int) -> None:
    seen: set[int] = set()
    jobs = []
    for image_id, (width, height), file_name in zip(collector.image_ids, collector.image_sizes, collector.image_files):
        if image_id not in seen:
            seen.add(image_id)
            jobs.append((image_id, image_dir / file_name, width, height))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        findings = pool.map(lambda job: check_image(job[1], job[2], job[3]), jobs)
        for (image_id, *_), finding in zip(jobs, findings):
            if finding is not None:
                collector.add(f"image {image_id}", *finding)


def _read(collector: _Collector, ann_file: Path) -> bool:
    """Stream the file into the collector; False (with a json.parse violation) if it is not JSON."""
    if not ann_file.is_file():
        collector.add("<file>", "file.missing", f"{ann_file} does not exist")
        return False
    try:
        for entry in iter_coco(ann_file):
            collector.top_level_keys.add(entry.key)
            if entry.key == "images" and entry.index is not None:
                collector.image(entry.index, entry.value, entry.nonstandard)
            elif entry.key == "annotations" and entry.index is not None:
                collector.annotation(entry.index, entry.value, entry.nonstandard)
            elif entry.key == "categories":
                collector.set_categories(entry.value)
            elif entry.key in ("images", "annotations") and entry.value == []:
                collector.add(entry.key, "schema.empty", f"the {entry.key!r} list is empty")
            elif entry.key in ("images", "annotations"):
                collector.add(entry.key, "schema.type", f"{entry.key!r} must be a list, got {type(entry.value).__name__}")
    except CocoJsonError as exc:
        collector.add("<file>", "json.parse", str(exc).removeprefix(f"{ann_file}: "))
        return False
    for key in REQUIRED_TOP_LEVEL:
        if key not in collector.top_level_keys:
            collector.add("<file>", "schema.missing_key", f"the file has no top-level {key!r}")
    return True


def annotation_table(table: np.ndarray, image_size: np.ndarray, num_keypoints: int) -> dict[str, np.ndarray]:
    """Per-annotation statistics the expectation suite checks (non-crowd people on listed images)."""
    col = {name: table[:, i] for i, name in enumerate(ANN_COLUMNS)}
    keep = (col["iscrowd"] == 0) & np.isfinite(image_size[:, 0]) & (col["w"] > 0) & (col["h"] > 0)
    w, h = col["w"][keep], col["h"][keep]
    image_area = image_size[keep, 0] * image_size[keep, 1]
    occluded, visible = col["n_v1"][keep], col["n_v2"][keep]
    labeled = occluded + visible
    with np.errstate(invalid="ignore", divide="ignore"):  # people without labels have no mix: NaN
        occluded_share = np.where(labeled > 0, occluded / labeled, np.nan)
    return {
        "labeled_fraction": labeled / max(num_keypoints, 1),
        "box_width": w,
        "box_height": h,
        "aspect_ratio": w / h,
        "relative_size": np.sqrt(w * h / image_area),
        "occluded_share": occluded_share,  # of the labeled keypoints, how many are v=1
        "visible_share": 1.0 - occluded_share,
    }


def _stats(collector: _Collector, table: np.ndarray) -> dict[str, Any]:
    col = {name: table[:, i] for i, name in enumerate(ANN_COLUMNS)}
    labeled = col["n_v1"] + col["n_v2"]
    annotated_images = np.unique(col["image_id"]).size
    return {
        "images": len(collector.image_ids),
        "images_without_annotations": len(set(collector.image_ids)) - int(annotated_images),
        "annotations": len(collector.ann_ids),
        "crowd_annotations": int(np.sum(col["iscrowd"] == 1)),
        "people_with_keypoints": int(np.sum(labeled > 0)),
        "labeled_keypoints": int(labeled.sum()),
        "visibility_counts": {str(v): int(col[f"n_v{v}"][labeled > 0].sum()) for v in VISIBILITY_VALUES},
    }


def validate_dataset(
    ann_file: str | Path,
    image_dir: str | Path,
    report_dir: str | Path | None = None,
    *,
    check_images: bool = True,
    expectations: bool = True,
    workers: int | None = None,
    keypoints: KeypointsConfig | None = None,
) -> ValidationReport:
    """Check a COCO keypoint file and its images; every problem is reported, none raises.

    The keypoint set is the file's one keypoint category (any names, any count), completed by the
    config's `keypoints` options (sigmas, flip pairs, upper body), which must fit it. With
    `report_dir`, writes report.json (verdict, stats, violations) there, plus the Great Expectations
    result and a readable summary from the statistical layer.
    """
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    collector = _Collector(ann_file)
    parsed = _read(collector, ann_file)
    stats: dict[str, Any] = {}
    expectation_result: dict[str, Any] = {}
    keypoint_set: KeypointSet | None = None
    if parsed:
        category_ids: set[int] = set()
        if "categories" in collector.top_level_keys:
            category_ids, keypoint_set = _check_categories(collector, keypoints)
        _check_keypoint_counts(collector, keypoint_set)
        collector.name_joints()
        table, image_size = _cross_checks(collector, category_ids)
        if check_images:
            if not image_dir.is_dir():
                collector.add("<images>", "image.missing_dir", f"image directory {image_dir} does not exist")
            else:
                _check_images(collector, image_dir, workers or min(8, (os.cpu_count() or 1) * 2))
        stats = _stats(collector, table)
        if expectations:
            from components.data.expectations import run_expectations

            try:
                counts = np.frombuffer(collector.kp_counts, dtype=np.int64) if collector.kp_counts else np.zeros(1)
                num_keypoints = keypoint_set.num_keypoints if keypoint_set else max(int(counts.max()), 1)
                outcome = run_expectations(annotation_table(table, image_size, num_keypoints), report_dir)
            except Exception as exc:  # a GX internal error must not hide the structural findings
                collector.add("<expectations>", "expectation.error", f"the statistical suite could not run: {exc!r}")
            else:
                expectation_result = outcome.summary
                for failure in outcome.failures:
                    collector.add(failure.record, failure.rule, failure.message)
    report = ValidationReport(
        ok=not collector.violations,
        violations=collector.violations,
        stats=stats,
        expectations=expectation_result,
        keypoints=keypoint_set,
    )
    if report_dir is not None:
        report.report_path = write_report(report, Path(report_dir), ann_file, image_dir)
    return report


def write_report(report: ValidationReport, report_dir: Path, ann_file: Path, image_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "report.json"
    payload = {
        "ann_file": str(ann_file),
        "image_dir": str(image_dir),
        "ok": report.ok,
        "stats": report.stats,
        "violation_counts": _count_rules(report.violations),
        "violations": [asdict(v) for v in report.violations],
        "expectations": report.expectations,
        "keypoints": report.keypoints.as_dict() if report.keypoints is not None else None,
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


def _count_rules(violations: Iterable[Violation]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for violation in violations:
        counts[violation.rule] = counts.get(violation.rule, 0) + 1
    return dict(sorted(counts.items()))
