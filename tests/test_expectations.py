"""The Great Expectations suite: real-looking tables pass, implausible ones fail with named rules."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from components.data.expectations import run_expectations
from components.data.validation import validate_dataset


def _plausible_table(rows: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """People as COCO has them: portrait boxes of many sizes, partly labeled, a few occluded joints."""
    rng = np.random.default_rng(seed)
    height = rng.uniform(20, 400, rows)
    width = height * rng.uniform(0.3, 0.9, rows)
    labeled = rng.integers(0, 18, rows)
    occluded = np.minimum(labeled, rng.integers(0, 3, rows))
    occluded_share = np.where(labeled > 0, occluded / np.maximum(labeled, 1), np.nan)
    return {
        "labeled_fraction": labeled / 17,
        "box_width": width,
        "box_height": height,
        "aspect_ratio": width / height,
        "relative_size": np.sqrt(width * height / (640 * 480)),
        "occluded_share": occluded_share,
        "visible_share": 1.0 - occluded_share,
    }


def test_plausible_table_passes_and_reports_are_written(tmp_path: Path) -> None:
    outcome = run_expectations(_plausible_table(), tmp_path)
    assert outcome.success and outcome.failures == []
    saved = json.loads(outcome.result_path.read_text())
    assert saved["success"] is True and len(saved["results"]) == len(outcome.summary["expectations"])
    assert "PASSED" in (tmp_path / "expectations.md").read_text()


def test_normalised_coordinates_fail_the_box_size_expectations() -> None:
    table = _plausible_table()
    table["box_width"] = table["box_width"] / 640  # boxes given as fractions of the image
    table["box_height"] = table["box_height"] / 480
    outcome = run_expectations(table)
    assert not outcome.success
    failed = {(f.rule, f.record) for f in outcome.failures}
    assert (
        "expectation.column_values_to_be_between",
        "expectation expect_column_values_to_be_between on box_width",
    ) in failed
    assert (
        "expectation.column_values_to_be_between",
        "expectation expect_column_values_to_be_between on box_height",
    ) in failed
    assert not any("aspect_ratio" in record for _, record in failed)


def test_unlabeled_and_mostly_occluded_sets_fail_the_mean_expectations() -> None:
    nobody = _plausible_table()
    nobody["labeled_fraction"] = np.zeros_like(nobody["labeled_fraction"])
    assert {f.record for f in run_expectations(nobody).failures} == {
        "expectation expect_column_mean_to_be_between on labeled_fraction"
    }
    swapped = _plausible_table()
    swapped["occluded_share"], swapped["visible_share"] = swapped["visible_share"], swapped["occluded_share"]
    records = {f.record for f in run_expectations(swapped).failures}
    assert records == {"expectation expect_column_mean_to_be_between on occluded_share"}


def test_empty_table_fails_row_count() -> None:
    empty = {name: np.zeros(0) for name in _plausible_table()}
    outcome = run_expectations(empty)
    assert "expectation.table_row_count_to_be_between" in {f.rule for f in outcome.failures}


def test_statistical_failures_reach_the_validation_report(coco_mini: Path, tmp_path: Path) -> None:
    ann = coco_mini / "annotations" / "person_keypoints_val2017.json"
    good = validate_dataset(ann, coco_mini / "val2017", tmp_path / "good", check_images=False)
    assert good.ok and good.expectations["success"]
    assert (tmp_path / "good" / "expectations.json").is_file()

    coco = json.loads(ann.read_text())
    flipped = copy.deepcopy(coco)
    for record in flipped["annotations"]:  # every labeled joint marked occluded: flags mixed up
        keypoints = record.get("keypoints", [])
        for j in range(2, len(keypoints), 3):
            keypoints[j] = 1 if keypoints[j] else 0
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(flipped))
    report = validate_dataset(path, coco_mini / "val2017", tmp_path / "bad", check_images=False)
    assert not report.ok
    assert report.rules() == {"expectation.column_mean_to_be_between"}
    assert "occluded_share" in report.violations[0].record
    assert json.loads(report.report_path.read_text())["expectations"]["success"] is False


@pytest.mark.parametrize("seed", [1, 2])
def test_verdict_is_deterministic(seed: int) -> None:
    first = run_expectations(_plausible_table(seed=seed)).summary
    second = run_expectations(_plausible_table(seed=seed)).summary
    assert first["expectations"] == second["expectations"]
