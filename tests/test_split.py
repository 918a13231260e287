"""make_split: reproducible, disjoint, labels stripped from unlabeled people, manifest that proves it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.config import DataConfig
from components.data.split import SplitError, coco_layout, make_split
from components.data.validation import validate_dataset
from components.keypoints import COCO_PERSON


def _write_coco(path: Path, num_images: int, seed: int, unlabeled_every: int = 4) -> dict[str, Any]:
    """JSON only (splitting never opens images): one or two people an image; every
    `unlabeled_every`-th image has only a person without keypoints, so it cannot be labeled."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id * 3, "file_name": f"{image_id:06d}.jpg", "width": 200, "height": 150})
        for person in range(1 + image_id % 2):
            x, y = rng.uniform(0, 100), rng.uniform(0, 50)
            labeled = image_id % unlabeled_every != 0
            keypoints = np.zeros((17, 3))
            if labeled:
                keypoints[:, 0] = x + rng.uniform(0, 50, 17)
                keypoints[:, 1] = y + rng.uniform(0, 90, 17)
                keypoints[:, 2] = rng.choice([1, 2], 17)
            annotations.append({
                "id": 1000 * image_id + person, "image_id": image_id * 3, "category_id": 1, "iscrowd": 0,
                "bbox": [x, y, 60.0, 95.0], "area": 5000.0, "segmentation": [[x, y, x + 60, y, x + 60, y + 95]],
                "keypoints": [round(float(v), 2) for v in keypoints.ravel()], "num_keypoints": 17 if labeled else 0,
            })  # fmt: skip
    coco = {
        "info": {"description": "split test"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [COCO_PERSON.coco_category()],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco))
    return coco


@pytest.fixture
def coco_set(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    train_ann = tmp_path / "data" / "annotations" / "person_keypoints_train.json"
    val_ann = tmp_path / "data" / "annotations" / "person_keypoints_val.json"
    coco = _write_coco(train_ann, 60, seed=1)
    _write_coco(val_ann, 5, seed=2)
    return train_ann, val_ann, coco


def _split(coco_set: tuple[Path, Path, dict], out: Path, **fields: Any):
    train_ann, val_ann, _ = coco_set
    cfg = DataConfig(**{"num_labeled": 10, "holdout_labeled": 5, **fields})
    return make_split(train_ann, train_ann.parent.parent / "train", val_ann, val_ann.parent.parent / "val", out, cfg)


def _ids(path: Path, section: str = "images") -> list[int]:
    return [record["id"] for record in json.loads(path.read_text())[section]]


def test_subsets_are_disjoint_and_cover_the_training_images(coco_set: tuple[Path, Path, dict], tmp_path: Path) -> None:
    files = _split(coco_set, tmp_path / "split")
    coco = coco_set[2]
    labeled, holdout, unlabeled = (set(_ids(p)) for p in (files.labeled_ann, files.holdout_ann, files.unlabeled_ann))
    assert len(labeled) == 10 and len(holdout) == 5
    assert not labeled & holdout and not labeled & unlabeled and not holdout & unlabeled
    assert labeled | holdout | unlabeled == {image["id"] for image in coco["images"]}
    keypointed = {a["image_id"] for a in coco["annotations"] if a["num_keypoints"] > 0}
    assert labeled | holdout <= keypointed  # only images with a labeled person are drawn
    for path, subset in ((files.labeled_ann, labeled), (files.holdout_ann, holdout), (files.unlabeled_ann, unlabeled)):
        assert {a["image_id"] for a in json.loads(path.read_text())["annotations"]} <= subset
    assert files.val_ann == coco_set[1]  # validation is passed through untouched


def test_unlabeled_people_keep_boxes_but_lose_keypoints(coco_set: tuple[Path, Path, dict], tmp_path: Path) -> None:
    files = _split(coco_set, tmp_path / "split")
    original = {a["id"]: a for a in coco_set[2]["annotations"]}
    unlabeled = json.loads(files.unlabeled_ann.read_text())
    unlabeled_images = {i["id"] for i in unlabeled["images"]}
    expected = {a["id"] for a in original.values() if a["image_id"] in unlabeled_images}
    assert {a["id"] for a in unlabeled["annotations"]} == expected
    for ann in unlabeled["annotations"]:
        assert ann["num_keypoints"] == 0 and not any(ann["keypoints"])
        assert ann["bbox"] == original[ann["id"]]["bbox"]
    labeled = json.loads(files.labeled_ann.read_text())
    assert all(a == original[a["id"]] for a in labeled["annotations"])  # labeled people untouched
    assert labeled["categories"] == [COCO_PERSON.coco_category()] and labeled["info"] == {"description": "split test"}


def test_same_seed_same_files_other_seed_other_subset(coco_set: tuple[Path, Path, dict], tmp_path: Path) -> None:
    first = _split(coco_set, tmp_path / "a")
    second = _split(coco_set, tmp_path / "b")
    for name in ("labeled_ann", "holdout_ann", "unlabeled_ann"):
        assert getattr(first, name).read_bytes() == getattr(second, name).read_bytes()
    other = _split(coco_set, tmp_path / "c", split_seed=7)
    assert _ids(other.labeled_ann) != _ids(first.labeled_ann)


def test_smaller_subsets_nest_and_holdout_stays_put(coco_set: tuple[Path, Path, dict], tmp_path: Path) -> None:
    small = _split(coco_set, tmp_path / "small", num_labeled=4)
    large = _split(coco_set, tmp_path / "large", num_labeled=12)
    assert set(_ids(small.labeled_ann)) < set(_ids(large.labeled_ann))
    assert _ids(small.holdout_ann) == _ids(large.holdout_ann)


def test_labeled_fraction_when_no_count(coco_set: tuple[Path, Path, dict], tmp_path: Path) -> None:
    files = _split(coco_set, tmp_path / "frac", num_labeled=None, labeled_fraction=0.25, holdout_labeled=0)
    eligible = len({a["image_id"] for a in coco_set[2]["annotations"] if a["num_keypoints"] > 0})
    assert len(_ids(files.labeled_ann)) == round(0.25 * eligible)
    assert _ids(files.holdout_ann) == []


def test_manifest_records_ids_and_hashes(coco_set: tuple[Path, Path, dict], tmp_path: Path) -> None:
    files = _split(coco_set, tmp_path / "split")
    manifest = json.loads(files.manifest.read_text())
    assert manifest["seed"] == 0
    assert manifest["image_ids"]["labeled"] == sorted(_ids(files.labeled_ann))
    assert manifest["counts"]["unlabeled"]["images"] == len(_ids(files.unlabeled_ann))
    for entry in (*manifest["inputs"].values(), *manifest["outputs"].values()):
        assert hashlib.sha256(Path(entry["path"]).read_bytes()).hexdigest() == entry["sha256"]


def test_detector_boxes_replace_ground_truth_for_unlabeled(coco_set: tuple[Path, Path, dict], tmp_path: Path) -> None:
    plain = _split(coco_set, tmp_path / "plain")
    unlabeled_images = _ids(plain.unlabeled_ann)
    detections = [
        {"image_id": unlabeled_images[0], "category_id": 1, "bbox": [1, 2, 30, 60], "score": 0.9},
        {"image_id": unlabeled_images[0], "category_id": 1, "bbox": [5, 5, 30, 60], "score": 0.3},  # too unsure
        {"image_id": unlabeled_images[1], "category_id": 2, "bbox": [5, 5, 30, 60], "score": 0.99},  # not a person
        {"image_id": _ids(plain.labeled_ann)[0], "category_id": 1, "bbox": [5, 5, 30, 60], "score": 0.99},  # labeled
    ]
    det_file = tmp_path / "detections.json"
    det_file.write_text(json.dumps(detections))
    files = _split(coco_set, tmp_path / "det", unlabeled_boxes=str(det_file))
    people = json.loads(files.unlabeled_ann.read_text())["annotations"]
    assert [(p["image_id"], p["bbox"], p["score"]) for p in people] == [(unlabeled_images[0], [1, 2, 30, 60], 0.9)]
    assert people[0]["id"] not in {a["id"] for a in coco_set[2]["annotations"]}
    assert json.loads(files.manifest.read_text())["inputs"]["unlabeled_boxes"]["path"] == str(det_file)


def test_too_many_labeled_images_is_a_clear_error(coco_set: tuple[Path, Path, dict], tmp_path: Path) -> None:
    with pytest.raises(SplitError, match="data.holdout_labeled"):
        _split(coco_set, tmp_path / "big", num_labeled=50)


def test_split_of_real_coco_validates(coco_mini: Path, tmp_path: Path) -> None:
    train_ann, train_images = coco_layout(coco_mini, "train2017")
    val_ann, val_images = coco_layout(coco_mini, "val2017")
    files = make_split(
        train_ann, train_images, val_ann, val_images, tmp_path, DataConfig(num_labeled=10, holdout_labeled=5)
    )
    for path in (files.labeled_ann, files.holdout_ann, files.unlabeled_ann):
        report = validate_dataset(path, train_images, check_images=False, expectations=False)
        assert report.ok, [str(v) for v in report.violations]
    assert (
        validate_dataset(files.unlabeled_ann, train_images, check_images=False, expectations=False).stats[
            "people_with_keypoints"
        ]
        == 0
    )


def test_cli_split_prints_counts_and_writes_manifest(coco_set: tuple[Path, Path, dict], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import cli

    root = coco_set[0].parent.parent
    for split in ("train", "val"):  # the folders the short form names (split copies them into its cache)
        (root / split).mkdir(exist_ok=True)
        (root / split / "000001.jpg").write_bytes(b"not needed by the split")
    out = tmp_path / "cli-split"
    args = [
        "data",
        "split",
        "--root",
        str(root),
        "--out",
        str(out),
        "--set",
        f"data.cache_dir={tmp_path / 'cache'}",
        "--set",
        "data.num_labeled=6",
        "--set",
        "data.holdout_labeled=2",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["labeled"]["images"] == 6 and "labeled:" in result.output
    too_many = CliRunner().invoke(cli, [*args[:-4], "--set", "data.num_labeled=500"])
    assert too_many.exit_code == 1 and "data.holdout_labeled" in too_many.output and "Traceback" not in too_many.output
