"""Typed artifacts passed between the pipeline's steps (pydantic, so ZenML stores them as JSON)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from components.data.split import SplitFiles


class DatasetArtifact(BaseModel):
    root: str  # local, content-addressed: the same path always means the same bytes
    train_split: str
    val_split: str
    counts: dict[str, dict[str, int] | None] = {}  # split -> images and people it lists (None: unreadable)


class ValidationArtifact(BaseModel):
    ok: bool
    num_violations: int
    violations: list[str]  # the first 200, formatted "file: record: [rule] message"
    stats: dict
    report_dir: str


class SplitArtifact(BaseModel):
    labeled_ann: str
    unlabeled_ann: str
    holdout_ann: str
    train_images: str
    val_ann: str
    val_images: str
    manifest: str
    dataset_root: str  # the ingested dataset the images live in (content-addressed)

    def files(self) -> SplitFiles:
        return SplitFiles(**{key: Path(value) for key, value in self.model_dump(exclude={"dataset_root"}).items()})


class TrainingArtifact(BaseModel):
    checkpoint_uri: str
    step: int
    mlflow_run_id: str
    history_file: str
    seconds: float | None = None  # wall time of the train step


class MetricsArtifact(BaseModel):
    metrics: dict[str, float]
    val_fingerprint: str
    results_file: str


class VersionArtifact(BaseModel):
    name: str
    version: str
    model_uri: str
    ap: float


class PromotionArtifact(BaseModel):
    version: str
    promoted: bool
    decision: str
    reason: str
    champion_version: str | None
