"""Structural validation on real COCO (coco-mini) and on a corpus of broken variants made from it."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from components.data.coco_json import CocoJsonError, iter_coco
from components.data.validation import validate_dataset

SPLIT = "val2017"


@pytest.fixture(scope="module")
def coco_val(coco_mini: Path) -> tuple[Path, Path, dict[str, Any]]:
    ann = coco_mini / "annotations" / f"person_keypoints_{SPLIT}.json"
    return ann, coco_mini / SPLIT, json.loads(ann.read_text())


def _person(coco: dict[str, Any], index: int = 0) -> dict[str, Any]:
    """The index-th non-crowd annotation with labeled keypoints."""
    people = [a for a in coco["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    return people[index]


def _image_of(coco: dict[str, Any], ann: dict[str, Any]) -> dict[str, Any]:
    return next(i for i in coco["images"] if i["id"] == ann["image_id"])


def _linked_images(source: Path, target: Path) -> Path:
    """A private image dir of symlinks, so a test can break one image without copying all."""
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).symlink_to(path)
    return target


def test_real_coco_files_are_valid(coco_mini: Path, tmp_path: Path) -> None:
    for split in ("train2017", "val2017"):
        ann = coco_mini / "annotations" / f"person_keypoints_{split}.json"
        report = validate_dataset(ann, coco_mini / split, tmp_path / split, expectations=False)
        assert report.ok, [str(v) for v in report.violations]
        assert report.stats["images"] == len(json.loads(ann.read_text())["images"])
        assert report.stats["crowd_annotations"] >= 1  # crowds exist and are accepted
        saved = json.loads(report.report_path.read_text())
        assert saved["ok"] is True and saved["stats"] == report.stats


def _set_keypoint(x: float | None = None, y: float | None = None, v: float | None = None) -> Callable:
    def mutate(coco: dict[str, Any]) -> str:
        ann = _person(coco)
        joint = next(j for j in range(17) if ann["keypoints"][3 * j + 2] > 0)
        for offset, value in ((0, x), (1, y), (2, v)):
            if value is not None:
                ann["keypoints"][3 * joint + offset] = value
        return f"annotation {ann['id']}"

    return mutate


def _outside_keypoint(coco: dict[str, Any]) -> str:
    ann = _person(coco)
    joint = next(j for j in range(17) if ann["keypoints"][3 * j + 2] > 0)
    ann["keypoints"][3 * joint] = _image_of(coco, ann)["width"] + 25
    return f"annotation {ann['id']}"


def _bbox_outside(coco: dict[str, Any]) -> str:
    ann = _person(coco)
    ann["bbox"][2] = _image_of(coco, ann)["width"] + 10.0
    return f"annotation {ann['id']}"


def _field(section: str, key: str, value: Any, index: int = 0) -> Callable:
    def mutate(coco: dict[str, Any]) -> str:
        record = coco[section][index] if section == "images" else _person(coco, index)
        record[key] = value
        if not isinstance(record["id"], int):
            return f"{section}[{coco[section].index(record)}]"
        return f"{'image' if section == 'images' else 'annotation'} {record['id']}"

    return mutate


def _drop_key(section: str, key: str) -> Callable:
    def mutate(coco: dict[str, Any]) -> str:
        record = coco[section][0] if section == "images" else _person(coco)
        del record[key]
        return f"{'image' if section == 'images' else 'annotation'} {record['id']}"

    return mutate


def _duplicate_image_id(coco: dict[str, Any]) -> str:
    coco["images"][1]["id"] = coco["images"][0]["id"]
    return f"image {coco['images'][0]['id']}"


def _duplicate_ann_id(coco: dict[str, Any]) -> str:
    first, second = _person(coco, 0), _person(coco, 1)
    second["id"] = first["id"]
    return f"annotation {first['id']}"


def _unlisted_image(coco: dict[str, Any]) -> str:
    ann = _person(coco)
    ann["image_id"] = 987654321
    return f"annotation {ann['id']}"


def _two_keypoint_categories(coco: dict[str, Any]) -> str:
    coco["categories"].append({**coco["categories"][0], "id": 2, "name": "hand"})
    return "categories"


def _no_keypoint_category(coco: dict[str, Any]) -> str:
    coco["categories"][0]["keypoints"] = []
    return "categories"


def _left_without_right(coco: dict[str, Any]) -> str:
    coco["categories"][0]["keypoints"][2] = "middle_eye"  # right_eye gone: left_eye has no twin
    return f"category {coco['categories'][0]['id']}"


def _fewer_names_than_keypoints(coco: dict[str, Any]) -> str:
    coco["categories"][0]["keypoints"] = coco["categories"][0]["keypoints"][:13]
    coco["categories"][0]["skeleton"] = []
    return f"category {coco['categories'][0]['id']}"


def _drop_annotations(coco: dict[str, Any]) -> str:
    del coco["annotations"]
    return "<file>"


def _short_keypoints(coco: dict[str, Any]) -> str:
    ann = _person(coco)
    ann["keypoints"] = ann["keypoints"][:-1]
    return f"annotation {ann['id']}"


def _string_keypoint(coco: dict[str, Any]) -> str:
    ann = _person(coco)
    ann["keypoints"][0] = "12"
    return f"annotation {ann['id']}"


def _nan_keypoint(coco: dict[str, Any]) -> str:
    return _set_keypoint(x=float("nan"))(coco)


CORPUS: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "nan_keypoint": (_nan_keypoint, "keypoints.non_finite"),
    "nan_constant": (_nan_keypoint, "json.non_finite"),
    "infinite_bbox": (_field("annotations", "bbox", [1.0, 2.0, float("inf"), 3.0]), "bbox.non_finite"),
    "bbox_int_beyond_float": (_field("annotations", "bbox", [1, 2, 10**400, 3]), "bbox.non_finite"),
    "area_nan": (_field("annotations", "area", float("nan")), "area.invalid"),
    "width_as_string": (_field("images", "width", "640"), "schema.type"),
    "ann_id_as_string": (_field("annotations", "id", "7"), "schema.type"),
    "ann_id_beyond_int64": (_field("annotations", "id", 2**70), "schema.type"),
    "image_id_as_float": (_field("annotations", "image_id", 1.5), "schema.type"),
    "iscrowd_2": (_field("annotations", "iscrowd", 2), "schema.type"),
    "missing_file_name": (_drop_key("images", "file_name"), "schema.missing_key"),
    "missing_bbox": (_drop_key("annotations", "bbox"), "schema.missing_key"),
    "duplicate_image_id": (_duplicate_image_id, "images.duplicate_id"),
    "duplicate_annotation_id": (_duplicate_ann_id, "annotations.duplicate_id"),
    "image_not_listed": (_unlisted_image, "annotation.image_unlisted"),
    "visibility_3": (_set_keypoint(v=3), "keypoints.visibility"),
    "wrong_num_keypoints": (_field("annotations", "num_keypoints", 16), "num_keypoints.mismatch"),
    "keypoints_50_values": (_short_keypoints, "keypoints.shape"),
    "keypoint_as_string": (_string_keypoint, "keypoints.type"),
    "keypoint_outside_image": (_outside_keypoint, "keypoints.outside_image"),
    "bbox_outside_image": (_bbox_outside, "bbox.outside_image"),
    "bbox_negative": (_field("annotations", "bbox", [-20.0, 5.0, 10.0, 10.0]), "bbox.negative"),
    "bbox_zero_width": (_field("annotations", "bbox", [5.0, 5.0, 0.0, 10.0]), "bbox.non_positive"),
    "area_zero": (_field("annotations", "area", 0), "area.non_positive"),
    "unknown_category": (_field("annotations", "category_id", 99), "annotation.category_unknown"),
    "two_keypoint_categories": (_two_keypoint_categories, "category.keypoints"),
    "no_keypoint_category": (_no_keypoint_category, "category.keypoints"),
    "left_without_right": (_left_without_right, "category.keypoint_set"),
    "names_fewer_than_keypoints": (_fewer_names_than_keypoints, "category.keypoint_count"),
    "no_annotations_key": (_drop_annotations, "schema.missing_key"),
}


@pytest.mark.parametrize("variant", sorted(CORPUS))
def test_broken_variant_fails_with_its_rule(variant: str, coco_val: tuple[Path, Path, dict], tmp_path: Path) -> None:
    ann, images, coco = coco_val
    broken = copy.deepcopy(coco)
    mutate, rule = CORPUS[variant]
    record = mutate(broken)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))  # allow_nan: Python writes NaN / Infinity, as real broken files have
    report = validate_dataset(path, images, check_images=False, expectations=False)
    assert not report.ok
    hits = [v for v in report.violations if v.rule == rule]
    assert hits, f"expected rule {rule}, got {[str(v) for v in report.violations]}"
    assert any(v.record == record for v in hits), [str(v) for v in hits]
    assert all(v.file == str(path) for v in report.violations)


@pytest.mark.parametrize(
    "text, where",
    [
        (None, "truncated"),  # first half of the real file
        ("", "empty"),
        ('[{"id": 1}]', "'{'"),
        ('{"images": [], "annotations": [], "categories": []} trailing', "extra data"),
        ('{"images": [{"id": 1} {"id": 2}]}', "after images[0]"),
    ],
)
def test_invalid_json_is_one_clear_violation(
    text: str | None, where: str, coco_val: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    ann, images, _ = coco_val
    path = tmp_path / "bad.json"
    if text is None:
        raw = ann.read_text()
        text = raw[: len(raw) // 2]
    path.write_text(text)
    report = validate_dataset(path, images, check_images=False, expectations=False)
    parse_errors = [v for v in report.violations if v.rule == "json.parse"]
    assert len(parse_errors) == 1 and not report.ok
    assert where in parse_errors[0].message and parse_errors[0].record == "<file>"
    if where == "truncated":
        assert "line 1 column" in parse_errors[0].message


def test_every_violation_is_reported_not_only_the_first(coco_val: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _, images, coco = coco_val
    broken = copy.deepcopy(coco)
    first, second = _person(broken, 0), _person(broken, 1)
    first["num_keypoints"] += 1
    second["keypoints"][2] = 7
    path = tmp_path / "two.json"
    path.write_text(json.dumps(broken))
    report = validate_dataset(path, images, check_images=False, expectations=False)
    found = {(v.record, v.rule) for v in report.violations}
    assert (f"annotation {first['id']}", "num_keypoints.mismatch") in found
    assert (f"annotation {second['id']}", "keypoints.visibility") in found


def test_crowd_annotation_without_keypoints_is_accepted(coco_val: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _, images, coco = coco_val
    crowded = copy.deepcopy(coco)
    base = _person(crowded)
    crowd = {k: v for k, v in base.items() if k not in ("keypoints", "num_keypoints")}
    crowd.update(id=base["id"] + 10_000_000, iscrowd=1, segmentation={"counts": [10, 5, 20], "size": [10, 10]})
    crowded["annotations"].append(crowd)
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps(crowded))
    report = validate_dataset(path, images, check_images=False, expectations=False)
    assert report.ok, [str(v) for v in report.violations]


def _image_variant(kind: str, images: Path, coco: dict[str, Any]) -> tuple[str, str]:
    image = _image_of(coco, _person(coco))
    path = images / image["file_name"]
    original = path.resolve()
    path.unlink()
    if kind == "missing":
        return f"image {image['id']}", "image.missing_file"
    if kind == "garbage":
        path.write_bytes(b"this is not a jpeg" * 100)
    elif kind == "truncated":
        path.write_bytes(original.read_bytes()[:2000])
    elif kind == "wrong_size":
        shutil.copy(original, path)
        image["width"] += 4
        return f"image {image['id']}", "image.size_mismatch"
    return f"image {image['id']}", "image.corrupt"


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated", "wrong_size"])
def test_broken_images_are_found(kind: str, coco_val: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _, source, coco = coco_val
    images = _linked_images(source, tmp_path / "images")
    variant = copy.deepcopy(coco)
    record, rule = _image_variant(kind, images, variant)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(variant))
    report = validate_dataset(path, images, expectations=False)
    assert [(v.record, v.rule) for v in report.violations if v.rule.startswith("image.")] == [(record, rule)]


def test_image_shared_by_many_people_is_checked_once(coco_val: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _, source, coco = coco_val
    images = _linked_images(source, tmp_path / "images")
    counts: dict[str, int] = {}
    for ann in coco["annotations"]:
        counts[ann["image_id"]] = counts.get(ann["image_id"], 0) + 1
    busy = next(i for i in coco["images"] if counts.get(i["id"], 0) > 1)
    (images / busy["file_name"]).unlink()
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps(coco))
    report = validate_dataset(ann_file, images, expectations=False)
    assert [v.record for v in report.violations] == [f"image {busy['id']}"]


def test_streaming_reader_matches_json_load_at_any_buffer_size(coco_val: tuple[Path, Path, dict]) -> None:
    ann, _, coco = coco_val
    for chunk in (5, 333, 1 << 16):
        rebuilt: dict[str, Any] = {}
        for entry in iter_coco(ann, chunk_chars=chunk):
            if entry.index is None:
                rebuilt[entry.key] = entry.value
            else:
                rebuilt.setdefault(entry.key, []).append(entry.value)
        assert rebuilt == coco


def test_streaming_reader_stops_at_a_syntax_error_without_reading_on(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    records = ",".join(json.dumps({"id": i, "pad": "x" * 50}) for i in range(2000))
    path.write_text('{"annotations": [{"id": 0} oops, ' + records + "]}")
    with pytest.raises(CocoJsonError) as caught:
        list(iter_coco(path, chunk_chars=64))
    assert caught.value.line == 1 and caught.value.column == len('{"annotations": [{"id": 0} ') + 1


def test_cli_exit_codes_and_printed_violations(coco_val: tuple[Path, Path, dict], tmp_path: Path) -> None:
    from cli.main import cli

    ann, images, coco = coco_val
    runner = CliRunner()
    good = runner.invoke(cli, ["data", "validate", "--ann", str(ann), "--images", str(images), "--no-expectations"])
    assert good.exit_code == 0, good.output
    assert "VALID" in good.output

    broken = copy.deepcopy(coco)
    first, second = _person(broken, 0), _person(broken, 1)
    first["num_keypoints"] += 1
    second["bbox"] = [0.0, 0.0, float("nan"), 1.0]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    bad = runner.invoke(
        cli,
        [
            "data",
            "validate",
            "--ann",
            str(path),
            "--images",
            str(images),
            "--no-expectations",
            "--report",
            str(tmp_path / "r"),
        ],
    )
    assert bad.exit_code == 1
    assert f"annotation {first['id']}: [num_keypoints.mismatch]" in bad.output
    assert f"annotation {second['id']}: [bbox.non_finite]" in bad.output
    assert "Traceback" not in bad.output
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert saved["ok"] is False and saved["violation_counts"]["num_keypoints.mismatch"] == 1

    missing = runner.invoke(cli, ["data", "validate", "--ann", str(tmp_path / "nope.json"), "--images", str(images)])
    assert missing.exit_code == 1 and "[file.missing]" in missing.output


def test_random_junk_in_any_field_never_raises(coco_val: tuple[Path, Path, dict], tmp_path: Path) -> None:
    """Whatever value lands in whatever field, the validator reports instead of crashing."""
    import numpy as np

    _, images, coco = coco_val
    rng = np.random.default_rng(0)
    junk: list[Any] = [None, "x", [], {}, -1, 0, 1e308, float("nan"), True, [1, 2], {"a": 1}, 10**30, -(10**400)]
    broken = copy.deepcopy(coco)
    touched = 0
    for section in ("images", "annotations", "categories"):
        for record in broken[section]:
            if rng.random() < 0.3:
                key = list(record)[rng.integers(len(record))]
                record[key] = junk[rng.integers(len(junk))]
                touched += 1
    broken["annotations"].insert(3, junk[rng.integers(len(junk))])  # a record that is not an object
    path = tmp_path / "junk.json"
    path.write_text(json.dumps(broken))
    report = validate_dataset(path, images, check_images=False, expectations=False)
    assert touched > 10 and not report.ok
    assert "annotations[3]" in {v.record for v in report.violations}
