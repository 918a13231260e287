"""Step 5: OKS AP of the student on the validation set, with pycocotools (registration logs it to MLflow)."""

from __future__ import annotations

from typing import Annotated

import torch
from zenml import step

from components.data.split import sha256_file
from components.engine.checkpoint import load_student
from components.evaluation.evaluate import evaluate_model
from steps.artifacts import MetricsArtifact, SplitArtifact, TrainingArtifact
from steps.context import experiment_config, run_dir, with_trained_keypoints


@step(enable_cache=False)
def evaluate_student(
    training: TrainingArtifact, split: SplitArtifact, config: dict
) -> Annotated[MetricsArtifact, "metrics"]:
    if training.skipped:
        return MetricsArtifact(metrics={}, val_fingerprint="", results_file="", skipped=training.skipped)
    model, trained = load_student(training.checkpoint_uri)
    cfg = with_trained_keypoints(experiment_config(config), trained)
    results_file = run_dir(cfg) / "val_results.json"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    metrics = evaluate_model(model, split.val_ann, split.val_images, cfg, results_out=results_file, device=device)
    return MetricsArtifact(
        metrics={k: float(v) for k, v in metrics.items()},
        val_fingerprint=sha256_file(split.val_ann),
        results_file=str(results_file),
    )
