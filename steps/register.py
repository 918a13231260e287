"""Step 6: log the student with its config, split manifest, metrics and plots; new version + `challenger`."""

from __future__ import annotations

from typing import Annotated

from zenml import step

from components.engine.checkpoint import load_student
from components.registry.registry import (
    TAG_AP,
    current_champion,
    register_student,
    registry_client,
    resolve_tracking_uri,
)
from components.registry.run_plots import run_plots
from steps.artifacts import MetricsArtifact, SplitArtifact, TrainingArtifact, VersionArtifact
from steps.context import experiment_config, run_dir


@step(enable_cache=False)
def register_model(
    training: TrainingArtifact, metrics: MetricsArtifact, split: SplitArtifact, config: dict
) -> Annotated[VersionArtifact, "model_version"]:
    cfg = experiment_config(config)
    tracking_uri = resolve_tracking_uri(cfg.registry)
    champion = current_champion(registry_client(tracking_uri), cfg.registry.model_name)
    champion_ap = float(champion.tags[TAG_AP]) if champion is not None and TAG_AP in champion.tags else None
    plots = run_plots(
        training.history_file, metrics.results_file, split.val_ann, split.val_images,
        cfg.train.method, metrics.metrics["AP"], champion_ap, run_dir(cfg) / "plots",
    )
    student, _ = load_student(training.checkpoint_uri)
    registered = register_student(
        student, cfg, metrics.metrics, metrics.val_fingerprint,
        split_manifest=split.manifest, plots=plots, run_id=training.mlflow_run_id, tracking_uri=tracking_uri,
    )
    return VersionArtifact(
        name=registered.name, version=registered.version, model_uri=registered.model_uri, ap=registered.ap
    )
