"""Typed artifacts passed between the pipeline's steps (pydantic, so ZenML stores them as JSON)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from components.data.split import SplitFiles
from components.data.unlabeled_pool import UnlabeledPool


class DatasetArtifact(BaseModel):
    """Local, content-addressed copies: the same path always means the same bytes."""

    train_ann: str
    train_images: str
    val_ann: str
    val_images: str
    fingerprints: dict[str, str]  # each labeled location's content fingerprint
    pool: dict | None = None  # UnlabeledPool.as_dict(): raw unlabeled images and video frames

    def unlabeled_pool(self) -> UnlabeledPool | None:
        return UnlabeledPool.from_dict(self.pool) if self.pool is not None else None

    counts: dict[str, dict[str, int] | None] = {}  # train/val -> images and people it lists (None: unreadable)


class ValidationArtifact(BaseModel):
    ok: bool
    num_violations: int
    violations: list[str]  # the first 200, formatted "file: record: [rule] message"
    stats: dict
    report_dir: str
    keypoints: dict | None = None  # the labeled data's keypoint set (KeypointSet.as_dict())
    unlabeled_checked: int = 0  # raw unlabeled images opened
    unlabeled_usable: int = 0
    unlabeled_skipped: list[str] = []  # the first 200 skipped, "file: record: [rule] message"
    unlabeled_index: str | None = None  # the usable and skipped images in full (unlabeled_pool.check_pool)


class BoxesArtifact(BaseModel):
    """Subject boxes of the raw unlabeled images (none when the run has none)."""

    provenance: dict  # box_source (whole_image, detector, file, none) and the detector's or file's hash
    boxes_file: str | None  # JSON {"provenance", "boxes"}; the split manifest records its sha256
    count: int


class SplitArtifact(BaseModel):
    labeled_ann: str
    unlabeled_ann: str
    holdout_ann: str
    train_images: str
    val_ann: str
    val_images: str
    manifest: str
    pool_ann: str | None = None
    pool_images: str | None = None

    def files(self) -> SplitFiles:
        def path(value: str | None) -> Path | None:
            return Path(value) if value is not None else None

        return SplitFiles(
            labeled_ann=Path(self.labeled_ann),
            unlabeled_ann=Path(self.unlabeled_ann),
            holdout_ann=Path(self.holdout_ann),
            train_images=Path(self.train_images),
            val_ann=Path(self.val_ann),
            val_images=Path(self.val_images),
            manifest=Path(self.manifest),
            pool_ann=path(self.pool_ann),
            pool_images=path(self.pool_images),
        )


class InputsArtifact(BaseModel):
    """What the run learns from, and whether it trains (`trs-pose run --if-changed`)."""

    fingerprint: str  # components/inputs_fingerprint.py
    parts: dict  # the fingerprint's parts: labeled, unlabeled, recipe
    train: bool
    reason: str  # one line: why it trains, or "nothing new since vN (fingerprint ...)"


class TrainingArtifact(BaseModel):
    checkpoint_uri: str
    step: int
    mlflow_run_id: str
    history_file: str
    seconds: float | None = None  # wall time of the train step
    init: str = "scratch"  # the weights it started from: models:/NAME/VERSION, a checkpoint, or scratch
    skipped: str | None = None  # why nothing was trained (then nothing after it runs either)

    @classmethod
    def nothing(cls, reason: str) -> TrainingArtifact:
        return cls(checkpoint_uri="", step=0, mlflow_run_id="", history_file="", skipped=reason)


class MetricsArtifact(BaseModel):
    metrics: dict[str, float]
    val_fingerprint: str
    results_file: str
    skipped: str | None = None


class VersionArtifact(BaseModel):
    name: str
    version: str
    model_uri: str
    ap: float
    skipped: str | None = None


class PromotionArtifact(BaseModel):
    version: str
    promoted: bool
    decision: str
    reason: str
    champion_version: str | None


class SuggestionsArtifact(BaseModel):
    """The run's "label these next" list; the task files are in MLflow (`suggestions/`) and `folder`."""

    method: str  # how the people were scored (components/labeling/uncertainty.py); "" when none were
    images: list[dict]  # {"image", "origin", "score", "people"}, most unsure first
    folder: str | None = None
