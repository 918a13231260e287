"""Keypoint sets other than COCO's 17, made from COCO-format people (synthetic or coco-mini) for tests.

The worker set and the remapping are the README example's (examples/own_data/make_stand_in.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from examples.own_data.make_stand_in import HEAD13, HEAD13_SKELETON, remap_keypoints

__all__ = ["HEAD13", "HEAD13_SKELETON", "head13", "remap_file", "remap_keypoints"]


def remap_file(source: Path, target: Path, keypoints: dict[str, list[str]], **kwargs: Any) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(remap_keypoints(json.loads(source.read_text()), keypoints, **kwargs)))
    return target


def head13(source: Path, target: Path) -> Path:
    """`source` (COCO's 17) as the 13-keypoint worker set."""
    return remap_file(source, target, HEAD13, skeleton=HEAD13_SKELETON)
