"""Labeled / unlabeled / held-out split of a COCO training set (the 1K/5K/10K protocol)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SplitFiles:
    """Everything training reads, as COCO-format files; written by `make_split`.

    `unlabeled_ann` keeps person boxes but carries no keypoints (all zeros, num_keypoints 0).
    `holdout_ann` is a small labeled subset, disjoint from `labeled_ann`, that ranks reviewer
    snapshots. Validation stays untouched.
    """

    labeled_ann: Path
    unlabeled_ann: Path
    holdout_ann: Path
    train_images: Path
    val_ann: Path
    val_images: Path
    manifest: Path
