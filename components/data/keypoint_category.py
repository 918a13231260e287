"""The keypoint set of a COCO file, and a config completed with it.

A run learns its keypoints from the labeled annotations' one keypoint-carrying category: names,
skeleton, category name and id go into `cfg.keypoints`, where the user's own options (sigmas, flip
pairs, upper body) already are. The completed config is what the trainer, checkpoints and registered
versions carry, so everything downstream knows the set from the config alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.config import ExperimentConfig, KeypointsConfig
from components.data.coco_json import CocoJsonError, iter_coco
from components.keypoints import (
    KeypointSet,
    KeypointSetError,
    category_names,
    category_skeleton,
    differences,
    keypoint_category,
)


def read_categories(ann_file: str | Path) -> Any:
    """The `categories` value of a COCO file (streamed: stops as soon as it is read)."""
    try:
        for entry in iter_coco(ann_file):
            if entry.key == "categories" and entry.index is None:
                return entry.value
    except FileNotFoundError as exc:
        raise KeypointSetError(f"{ann_file}: the annotation file does not exist") from exc
    except CocoJsonError as exc:
        raise KeypointSetError(str(exc)) from exc
    raise KeypointSetError(f"{ann_file}: no 'categories' list, so no keypoint set")


def keypoints_from_category(keypoints: KeypointsConfig, category: dict[str, Any], source: str) -> KeypointsConfig:
    """`keypoints` with names, skeleton and category read from `category`; refuses a set other than a given one."""
    names = category_names(category, source)
    if keypoints.names is not None and keypoints.names != names:
        raise KeypointSetError(
            f"{source}: the keypoints differ from keypoints.names in the config "
            f"({differences(keypoints.keypoint_set(), names)})"
        )
    try:
        category_id = int(category.get("id", 1))
    except (TypeError, ValueError) as exc:
        raise KeypointSetError(f"{source}: category {category.get('name')!r} has no integer id") from exc
    update = {
        "names": names,
        "skeleton": category_skeleton(category, source),
        "category": str(category.get("name") or "person"),
        "category_id": category_id,
    }
    merged = keypoints.model_dump() | update
    try:
        resolved = KeypointsConfig.model_validate(merged)
    except ValueError as exc:
        raise KeypointSetError(f"{source}: {_first_error(exc)}") from None
    return resolved


def with_keypoints_of(cfg: ExperimentConfig, ann_file: str | Path) -> ExperimentConfig:
    """`cfg` with its keypoint set read from `ann_file` (a labeled COCO file)."""
    source = str(ann_file)
    category = keypoint_category(read_categories(ann_file), source)
    return cfg.model_copy(update={"keypoints": keypoints_from_category(cfg.keypoints, category, source)})


def check_same_set(expected: KeypointSet, ann_file: str | Path, what: str = "the model") -> None:
    """Refuse annotations whose keypoints are not `expected`'s, with one line naming both."""
    source = str(ann_file)
    names = category_names(keypoint_category(read_categories(ann_file), source), source)
    problem = differences(expected, names)
    if problem is not None:
        raise KeypointSetError(
            f"{source}: its keypoints are not {what}'s: {problem}; {what} knows {expected.summary()}"
        )


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        location = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", exc)).removeprefix("Value error, ")
        return f"keypoints{'.' + location if location else ''}: {message}"
    return str(exc)
