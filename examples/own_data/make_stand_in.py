"""A stand-in for the data users bring, for the README's "Your own data" example.

    python -m examples.own_data.make_stand_in data/own

writes what a user typically has: COCO keypoint files with their own keypoint set and category
(`labels/train.json`, `labels/val.json`: a 13-keypoint "worker" set, the face reduced to one head
point, sides written l_/r_), the labeled images (`labels/images/`), and a folder of raw unlabeled
images with no annotations at all (`raw/`). The people are trs-pose's synthetic ones, drawn into a
scratch folder first.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from components.data.synthetic import generate_dataset
from components.keypoints import COCO_NAMES

# new keypoint -> the COCO keypoints it averages, in the new set's order
HEAD13: dict[str, list[str]] = {
    "head": ["nose", "left_eye", "right_eye", "left_ear", "right_ear"],
    **{f"{side[0]}_{part}": [f"{side}_{part}"] for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
       for side in ("left", "right")},
}  # fmt: skip
HEAD13_SKELETON: list[tuple[str, str]] = [
    ("head", "l_shoulder"), ("head", "r_shoulder"), ("l_shoulder", "r_shoulder"), ("l_shoulder", "l_elbow"),
    ("l_elbow", "l_wrist"), ("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"), ("l_shoulder", "l_hip"),
    ("r_shoulder", "r_hip"), ("l_hip", "r_hip"), ("l_hip", "l_knee"), ("l_knee", "l_ankle"), ("r_hip", "r_knee"),
    ("r_knee", "r_ankle"),
]  # fmt: skip


def remap_keypoints(
    coco: dict[str, Any],
    keypoints: dict[str, list[str]],
    category: str = "worker",
    skeleton: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """A copy of a COCO person file with the set `keypoints` (new name -> the COCO keypoints it averages,
    in the order given): each new keypoint is labeled where any of its sources is, at their mean."""
    out = copy.deepcopy(coco)
    names = list(keypoints)
    index = {name: i for i, name in enumerate(COCO_NAMES)}
    for ann in out["annotations"]:
        raw = ann.get("keypoints")
        if not raw:
            continue
        points = np.asarray(raw, dtype=np.float64).reshape(len(COCO_NAMES), 3)
        remapped: list[float | int] = []
        for sources in keypoints.values():
            picked = points[[index[s] for s in sources]]
            labeled = picked[picked[:, 2] > 0]
            if len(labeled):
                x, y = labeled[:, :2].mean(axis=0)
                remapped.extend([round(float(x), 2), round(float(y), 2), int(labeled[:, 2].max())])
            else:
                remapped.extend([0, 0, 0])
        ann["keypoints"] = remapped
        ann["num_keypoints"] = sum(1 for v in remapped[2::3] if v > 0)
    for cat in out["categories"]:
        if cat.get("keypoints"):
            cat.update(
                name=category,
                supercategory=category,
                keypoints=names,
                skeleton=[[names.index(a) + 1, names.index(b) + 1] for a, b in skeleton or []],
            )
    return out


def make_stand_in(out: str | Path, labeled: int = 240, val: int = 60, raw: int = 600, seed: int = 0) -> Path:
    """labels/{train,val}.json + labels/images/ (the worker set) and raw/ (unlabeled) under `out`."""
    out = Path(out)
    with tempfile.TemporaryDirectory() as scratch:
        drawn = Path(scratch) / "people"
        generate_dataset(drawn, labeled + raw, val, seed=seed, image_size=(256, 320), style="easy")
        images = out / "labels" / "images"
        images.mkdir(parents=True, exist_ok=True)
        (out / "raw").mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            coco = json.loads((drawn / "annotations" / f"person_keypoints_{split}.json").read_text())
            kept = coco["images"][:labeled] if split == "train" else coco["images"]
            ids = {image["id"] for image in kept}
            for image in coco["images"]:
                target = images if image["id"] in ids else out / "raw"
                shutil.copy(drawn / split / image["file_name"], target / image["file_name"])
            coco["images"] = kept
            coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
            coco["info"] = {"description": "stand-in for your labels: trs-pose synthetic workers"}
            worker = remap_keypoints(coco, HEAD13, skeleton=HEAD13_SKELETON)
            (out / "labels" / f"{split}.json").write_text(json.dumps(worker))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write labels/ and raw/ into")
    parser.add_argument("--labeled", type=int, default=240, help="labeled training images")
    parser.add_argument("--val", type=int, default=60, help="labeled validation images")
    parser.add_argument("--raw", type=int, default=600, help="raw unlabeled images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = make_stand_in(args.out, args.labeled, args.val, args.raw, args.seed)
    print(f"labels: {out / 'labels'} ({args.labeled} + {args.val} images, 13 keypoints); raw: {out / 'raw'}")


if __name__ == "__main__":
    main()
