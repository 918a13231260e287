"""Step 6: log the student with its validation metrics and results, split manifest and figures; version + `challenger`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from zenml import step

from components.engine.checkpoint import load_student
from components.registry.changes import TAG_INIT, TAG_INPUTS
from components.registry.lifecycle import RESULTS_FOLDER, champion_validation, current_champion, register_student
from components.registry.mlflow_client import resolve_tracking_uri
from components.registry.outages import is_transient_mlflow_error, patient_registry_client
from components.reporting.run_report import EvaluatedModel, draw_run_figures
from components.storage.retry import with_retries
from steps.artifacts import InputsArtifact, MetricsArtifact, SplitArtifact, TrainingArtifact, VersionArtifact
from steps.context import experiment_config, run_dir, with_trained_keypoints


@step(enable_cache=False)
def register_model(
    training: TrainingArtifact, metrics: MetricsArtifact, split: SplitArtifact, inputs: InputsArtifact, config: dict
) -> Annotated[VersionArtifact, "model_version"]:
    if training.skipped:
        return VersionArtifact(name="", version="", model_uri="", ap=0.0, skipped=training.skipped)
    student, trained = load_student(training.checkpoint_uri)
    cfg = with_trained_keypoints(experiment_config(config), trained)
    tracking_uri = resolve_tracking_uri(cfg.registry)
    deadline_s = cfg.registry.retry_deadline_s
    client = patient_registry_client(tracking_uri, deadline_s)
    champion = current_champion(client, cfg.registry.model_name)
    against = None
    if champion is not None:
        champion_metrics, champion_results = champion_validation(
            client, champion, metrics.val_fingerprint, run_dir(cfg) / "champion"
        )
        against = EvaluatedModel(f"champion v{champion.version}", champion_metrics, champion_results)
    plots = draw_run_figures(
        run_dir(cfg) / "plots",
        EvaluatedModel("challenger", metrics.metrics, metrics.results_file),
        split.val_ann,
        split.val_images,
        history=json.loads(Path(training.history_file).read_text()),
        cfg=cfg,
        champion=against,
        margin=cfg.registry.promotion_margin,
    )
    registered = with_retries(  # a retry first removes the pending version an interrupted attempt left
        lambda: register_student(
            student,
            cfg,
            metrics.metrics,
            metrics.val_fingerprint,
            split_manifest=split.manifest,
            plots=plots,
            artifacts={RESULTS_FOLDER: metrics.results_file},
            run_id=training.mlflow_run_id,
            tracking_uri=tracking_uri,
            step=training.step,
            tags={TAG_INPUTS: inputs.fingerprint, TAG_INIT: training.init},
        ),
        transient=is_transient_mlflow_error,
        deadline_s=deadline_s,
        endpoint=f"MLflow server {tracking_uri}",
        what=f"a version of {cfg.registry.model_name} from run {training.mlflow_run_id}",
    )
    return VersionArtifact(
        name=registered.name, version=registered.version, model_uri=registered.model_uri, ap=registered.ap
    )
