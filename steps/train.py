"""Step 4: TRS training, in this process or in a Kubernetes pod; metrics stream to MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from zenml import step

from components.data.split import SplitFiles
from components.registry.tracking import tracked_run
from steps.artifacts import SplitArtifact, TrainingArtifact
from steps.context import experiment_config, run_dir, run_name


@step(enable_cache=False)
def train_model(split: SplitArtifact, config: dict) -> Annotated[TrainingArtifact, "training"]:
    name = run_name()
    cfg = experiment_config(config)
    history_file = run_dir(cfg) / "history.json"
    with tracked_run(cfg, name) as logger:
        if cfg.backend.kind == "kubernetes":
            from components.kubernetes.launcher import launch_training

            launched = launch_training(cfg, run_id=name)
            checkpoint_uri, step, history = launched.checkpoint_uri, launched.step, [launched.metrics]
            logger.log_metrics(launched.metrics, step)
        else:
            from components.engine.trainer import train

            files = SplitFiles(**{key: Path(value) for key, value in split.model_dump().items()})
            result = train(cfg, files, logger=logger)
            checkpoint_uri, step, history = result.checkpoint_uri, result.step, result.history
        history_file.write_text(json.dumps(history))
    return TrainingArtifact(
        checkpoint_uri=checkpoint_uri, step=step, mlflow_run_id=logger.run_id, history_file=str(history_file)
    )
