"""Labels that come back from Label Studio or CVAT, merged into the labeled file as a new file.

The returned file is validated like any annotation file (structure, the keypoint set: it must be
the labeled file's). Each clash is refused with one line naming both records: an image labeled in
both files (same file name), or an image or annotation id both files use for different things
(`renumber` gives the returned records fresh ids above the labeled file's instead). Neither input is
ever edited; the merge is a new file, written atomically, and a run on it sees a changed fingerprint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.atomic_files import write_atomically
from components.config import KeypointsConfig
from components.data.validation import validate_dataset
from components.errors import TrsPoseError
from components.keypoints import category_names, differences, keypoint_category


class MergeError(TrsPoseError, ValueError):
    """The returned labels cannot be merged; the message names the file, the record and the rule."""


@dataclass(frozen=True)
class MergeSummary:
    out: Path
    images_added: int
    annotations_added: int
    labeled_people: int  # returned people with at least one labeled keypoint


def _load(path: Path) -> dict[str, Any]:
    try:
        coco = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise MergeError(f"{path}: the file does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MergeError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(coco, dict):
        raise MergeError(f"{path}: a COCO file is a JSON object")
    return coco


def _renumbered(returned: dict[str, Any], labeled: dict[str, Any]) -> dict[str, Any]:
    next_image = max((int(i["id"]) for i in labeled["images"]), default=0) + 1
    next_ann = max((int(a["id"]) for a in labeled["annotations"]), default=0) + 1
    image_ids = {int(image["id"]): next_image + n for n, image in enumerate(returned["images"])}
    out = dict(returned)
    out["images"] = [{**image, "id": image_ids[int(image["id"])]} for image in returned["images"]]
    out["annotations"] = [
        {**ann, "id": next_ann + n, "image_id": image_ids[int(ann["image_id"])]}
        for n, ann in enumerate(returned["annotations"])
    ]
    return out


def merge_labels(
    returned_file: str | Path,
    labeled_file: str | Path,
    out: str | Path,
    *,
    renumber: bool = False,
    keypoints: KeypointsConfig | None = None,
) -> MergeSummary:
    """`labeled_file` plus the people of `returned_file`, written to `out` (a third file)."""
    returned_path, labeled_path, out_path = Path(returned_file), Path(labeled_file), Path(out)
    for given in (returned_path, labeled_path):
        if out_path.resolve() == given.resolve():
            raise MergeError(
                f"--out {out_path} is an input; the merge is written to a new file, inputs stay as they are"
            )
    report = validate_dataset(returned_path, ".", check_images=False, expectations=False, keypoints=keypoints)
    if not report.ok:
        first = report.violations[0]
        raise MergeError(f"{first} ({len(report.violations)} violation(s); `trs-pose data validate` lists them all)")
    returned, labeled = _load(returned_path), _load(labeled_path)
    ours = category_names(keypoint_category(labeled.get("categories"), str(labeled_path)), str(labeled_path))
    assert report.keypoints is not None  # a valid file has its set
    problem = differences(report.keypoints, ours)
    if problem is not None:
        raise MergeError(
            f"{returned_path}: its keypoints are not {labeled_path}'s ({report.keypoints.summary()}): {problem}"
        )
    labeled_names = {image["file_name"]: image for image in labeled["images"]}
    labeled_with_people = {int(a["image_id"]) for a in labeled["annotations"]}
    returned_with_people = {int(a["image_id"]) for a in returned["annotations"]}
    for image in returned["images"]:
        twin = labeled_names.get(image["file_name"])
        if twin is not None and int(image["id"]) in returned_with_people and int(twin["id"]) in labeled_with_people:
            raise MergeError(
                f"{returned_path}: image {image['id']} ({image['file_name']}) is labeled twice: "
                f"{labeled_path} has it as image {twin['id']}"
            )
    if renumber:
        returned = _renumbered(returned, labeled)
    image_by_id = {int(i["id"]): i for i in labeled["images"]}
    for image in returned["images"]:
        twin = image_by_id.get(int(image["id"]))
        if twin is not None and twin["file_name"] != image["file_name"]:
            raise MergeError(
                f"{returned_path}: image id {image['id']} ({image['file_name']}) clashes with {labeled_path}'s "
                f"image {twin['id']} ({twin['file_name']}); pass --renumber to give the returned records new ids"
            )
    ann_ids = {int(a["id"]): a for a in labeled["annotations"]}
    for ann in returned["annotations"]:
        if int(ann["id"]) in ann_ids:
            raise MergeError(
                f"{returned_path}: annotation id {ann['id']} (image {ann['image_id']}) clashes with {labeled_path}'s "
                f"annotation {ann['id']} (image {ann_ids[int(ann['id'])]['image_id']}); pass --renumber"
            )
    known = set(image_by_id)
    new_images = [image for image in returned["images"] if int(image["id"]) not in known]
    annotations = [{k: v for k, v in ann.items() if k != "score"} for ann in returned["annotations"]]
    merged = {
        **labeled,
        "images": [*labeled["images"], *new_images],
        "annotations": [*labeled["annotations"], *annotations],
    }
    write_atomically(out_path, json.dumps(merged))
    people = sum(1 for ann in annotations if ann.get("num_keypoints", 0) > 0)
    return MergeSummary(out_path, len(new_images), len(annotations), people)
