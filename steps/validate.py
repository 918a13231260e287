"""Step 2: structural checks and the Great Expectations suite; a failure stops the run here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from zenml import save_artifact, step

from components.data.split import coco_layout
from components.data.validation import ValidationReport, validate_dataset
from components.errors import TrsPoseError
from steps.artifacts import DatasetArtifact, ValidationArtifact


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
        shown = "\n".join(summary.violations[:20])
        raise DataValidationError(
            f"{summary.num_violations} validation rule(s) broken; nothing was trained or registered. "
            f"Full report: {report_dir}\n{shown}"
        )
    return summary
