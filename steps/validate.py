"""Step 2: structural checks and the Great Expectations suite on the labeled files, one keypoint set
across them, and every raw unlabeled image opened; a failure stops the run here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

from zenml import save_artifact, step

from components.config import DataConfig, KeypointsConfig
from components.data.unlabeled_pool import check_pool
from components.data.validation import ValidationReport, Violation, validate_dataset
from components.errors import TrsPoseError
from steps.artifacts import DatasetArtifact, ValidationArtifact
from steps.context import beside_entry

SHOWN = 200  # violations kept in the artifact
SHOWN_VIOLATIONS = 5  # printed on the failure line


class DataValidationError(TrsPoseError, RuntimeError):
    """The dataset broke validation rules; the report artifact lists every violation."""


def _same_keypoints(reports: list[ValidationReport], files: list[str]) -> list[Violation]:
    """Training and validation files must define the same keypoint set."""
    sets = [report.keypoints for report in reports]
    if None in sets or sets[0] == sets[1]:
        return []
    assert sets[0] is not None and sets[1] is not None
    return [
        Violation(
            files[1],
            "categories",
            "category.keypoint_set_mismatch",
            f"the keypoints differ from {files[0]}'s: {sets[1].summary()} against {sets[0].summary()}",
        )
    ]


@step(enable_cache=True)  # every input path is content-addressed, so equal inputs mean equal data
def validate_data(
    dataset: DatasetArtifact, keypoints_config: dict, data_config: dict
) -> Annotated[ValidationArtifact, "validation_report"]:
    keypoints = KeypointsConfig.model_validate(keypoints_config)
    unlabeled = DataConfig.model_validate(data_config).unlabeled
    settings = hashlib.sha256(json.dumps([keypoints_config, data_config["unlabeled"]]).encode()).hexdigest()[:12]
    report_dir = beside_entry(dataset.train_ann, "validation", settings)
    reports = [
        validate_dataset(ann, images, report_dir / name, keypoints=keypoints)
        for name, ann, images in (
            ("train", dataset.train_ann, dataset.train_images),
            ("val", dataset.val_ann, dataset.val_images),
        )
    ]
    violations = [str(v) for report in reports for v in report.violations]
    violations += [str(v) for v in _same_keypoints(reports, [dataset.train_ann, dataset.val_ann])]
    pool = dataset.unlabeled_pool()
    checked = check_pool(pool, unlabeled, report_dir / "unlabeled") if pool is not None else None
    skipped = [str(v) for v in checked.skipped] if checked is not None else []
    if skipped and unlabeled.on_error == "fail":
        violations += skipped
    summary = ValidationArtifact(
        ok=not violations,
        num_violations=len(violations),
        violations=violations[:SHOWN],
        stats={name: report.stats for name, report in zip(("train", "val"), reports, strict=True)},
        report_dir=str(report_dir),
        keypoints=reports[0].keypoints.as_dict() if reports[0].keypoints is not None else None,
        unlabeled_checked=checked.checked if checked is not None else 0,
        unlabeled_usable=len(checked.usable) if checked is not None else 0,
        unlabeled_skipped=skipped[:SHOWN],
        unlabeled_index=str(checked.index) if checked is not None else None,
    )
    if skipped and unlabeled.on_error == "skip":
        print(
            f"{len(skipped)} of {checked.checked if checked else 0} raw unlabeled images skipped; report: {report_dir}"
        )
    if not summary.ok:
        save_artifact(summary, name="failed_validation_report")
        reports_failed = [r.report_path for r in reports if not r.ok]
        if skipped and unlabeled.on_error == "fail" and checked is not None:
            reports_failed.append(checked.index)
        raise DataValidationError(failure_message(summary, reports_failed))
    return summary


def failure_message(summary: ValidationArtifact, report_paths: list[Path | None]) -> str:
    """The count on the first line; then the first violations (file: record: [rule] message) and the
    reports that list them all, one a line."""
    shown = summary.violations[:SHOWN_VIOLATIONS]
    more = summary.num_violations - len(shown)
    lines = [
        f"{summary.num_violations} validation rule violation(s) in the data",
        *shown,
        *([f"... and {more} more"] if more > 0 else []),
        *(f"full report: {path}" for path in report_paths if path is not None),
    ]
    return "\n".join(lines)
