"""Step 4: TRS training, in this process or in a Kubernetes pod; metrics stream to MLflow.

A pod trains on this run's split: it is published to S3 and the pod gets its URI and hashes."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

from zenml import step

from components.registry.mlflow_client import resolve_tracking_uri
from components.registry.outages import patient_registry_client
from components.registry.run_logging import MLflowMetricLogger, mlflow_run
from steps.artifacts import SplitArtifact, TrainingArtifact
from steps.context import experiment_config, run_dir, run_name


@step(enable_cache=False)
def train_model(split: SplitArtifact, config: dict) -> Annotated[TrainingArtifact, "training"]:
    started = time.monotonic()
    name = run_name()
    cfg = experiment_config(config)
    history_file = run_dir(cfg) / "history.json"
    client = patient_registry_client(resolve_tracking_uri(cfg.registry), cfg.registry.retry_deadline_s)
    with mlflow_run(client, cfg, name) as mlflow_run_id:
        logger = MLflowMetricLogger(mlflow_run_id, client)
        if cfg.backend.kind == "kubernetes":
            from components.data.published_split import publish_split
            from components.engine.checkpoint import load_checkpoint
            from components.kubernetes.launcher import launch_training
            from components.storage.s3 import s3_client

            s3 = s3_client(cfg.storage.endpoint_url, cfg.storage.region)
            published = publish_split(split.files(), s3, cfg.storage.bucket)
            launched = launch_training(cfg, run_id=name, split=published)
            checkpoint_uri, step = launched.checkpoint_uri, launched.step
            history = load_checkpoint(checkpoint_uri, s3).get("history") or [launched.metrics]  # the pod's full history
            logger.log_metrics(launched.metrics, step)
        else:
            from components.engine.trainer import train

            result = train(cfg, split.files(), logger=logger, progress=sys.stderr.isatty())  # no bar in logs
            checkpoint_uri, step, history = result.checkpoint_uri, result.step, result.history
        history_file.write_text(json.dumps(history))
    return TrainingArtifact(
        checkpoint_uri=checkpoint_uri,
        step=step,
        mlflow_run_id=mlflow_run_id,
        history_file=str(history_file),
        seconds=time.monotonic() - started,
    )
