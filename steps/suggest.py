"""Step 10: the run's "label these next" list: the unlabeled images its teacher and reviewer disagree on
most, as a labeling task logged to the run's MLflow run (`suggestions/`) and kept as a ZenML artifact."""

from __future__ import annotations

from typing import Annotated

from zenml import step

from components.engine.checkpoint import load_checkpoint
from components.labeling.suggest import suggest_labels
from components.labeling.uncertainty import scoring_models
from components.registry.mlflow_client import resolve_tracking_uri
from components.registry.outages import patient_registry_client
from components.registry.run_logging import log_files
from steps.artifacts import SplitArtifact, SuggestionsArtifact, TrainingArtifact
from steps.context import experiment_config, run_dir

FOLDER = "suggestions"


@step(enable_cache=False)
def suggest_next_labels(
    training: TrainingArtifact, split: SplitArtifact, config: dict
) -> Annotated[SuggestionsArtifact, "label_suggestions"]:
    cfg = experiment_config(config)
    if training.skipped or not cfg.suggest.enabled:
        return SuggestionsArtifact(method="", images=[])
    state = load_checkpoint(training.checkpoint_uri)
    trained = experiment_config(state["config"])
    found = suggest_labels(
        scoring_models(state, trained),
        trained,
        split.files(),
        cfg.suggest.budget,
        run_dir(cfg) / FOLDER,
        model_label=training.checkpoint_uri,
        max_images=cfg.suggest.max_images,
        seed=cfg.train.seed,
    )
    task = found.task
    client = patient_registry_client(resolve_tracking_uri(cfg.registry), cfg.registry.retry_deadline_s)
    log_files(
        client,
        training.mlflow_run_id,
        [(FOLDER, path) for path in (task.pre_annotations, task.scores, task.image_list)],
    )
    images = [
        {"image": s.task_name, "origin": s.origin, "score": round(s.score, 4), "people": len(s.people)}
        for s in found.picked
    ]
    return SuggestionsArtifact(method=found.method, images=images, folder=str(task.folder))
