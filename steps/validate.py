"""Step 2: structural checks and the Great Expectations suite; a failure stops the run here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from zenml import save_artifact, step

from components.data.split import coco_layout
from components.data.validation import ValidationReport, validate_dataset
from components.errors import TrsPoseError
from steps.artifacts import DatasetArtifact, ValidationArtifact

SHOWN_VIOLATIONS = 5


class DataValidationError(TrsPoseError, RuntimeError):
    """The dataset broke validation rules; the report artifact lists every violation."""


def _merge(reports: list[ValidationReport], report_dir: Path) -> ValidationArtifact:
    violations = [str(v) for report in reports for v in report.violations]
    return ValidationArtifact(
        ok=all(report.ok for report in reports),
        num_violations=len(violations),
        violations=violations[:200],
        stats={str(report.report_path or index): report.stats for index, report in enumerate(reports)},
        report_dir=str(report_dir),
    )


@step(enable_cache=True)  # the dataset root is content-addressed, so equal inputs mean equal data
def validate_data(dataset: DatasetArtifact) -> Annotated[ValidationArtifact, "validation_report"]:
    report_dir = Path(f"{dataset.root}.validation")
    reports = []
    for split in (dataset.train_split, dataset.val_split):
        ann, images = coco_layout(dataset.root, split)
        reports.append(validate_dataset(ann, images, report_dir / split))
    summary = _merge(reports, report_dir)
    if not summary.ok:
        save_artifact(summary, name="failed_validation_report")
        raise DataValidationError(failure_message(summary, [r.report_path for r in reports if not r.ok]))
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
