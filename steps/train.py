"""Step 6: TRS training, in this process or in a Kubernetes pod; metrics stream to MLflow.

A pod trains on this run's split: it is published to S3 and the pod gets its URI and hashes. A warm
start (`train.init`) is pinned here to the version or checkpoint it names now, and the run's lineage
(MLflow tag, ZenML metadata, the registered version's tag) says which."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Annotated

from zenml import log_metadata, step

from components.config import ExperimentConfig
from components.registry.changes import TAG_INIT
from components.registry.mlflow_client import resolve_tracking_uri
from components.registry.outages import patient_registry_client
from components.registry.run_logging import MLflowMetricLogger, mlflow_run
from steps.artifacts import InputsArtifact, SplitArtifact, TrainingArtifact
from steps.context import experiment_config, run_dir, run_name


def pinned_init(cfg: ExperimentConfig, tracking_uri: str) -> ExperimentConfig:
    """`cfg` with train.init fixed to the weights it names now (scratch while there is no champion yet)."""
    from components.serving.model_source import pin_init

    pinned = pin_init(cfg.train.init, cfg.registry.model_name, tracking_uri)
    if pinned is None and cfg.train.warm:
        print(f"train.init={cfg.train.init}: {cfg.registry.model_name} has no champion yet; training from scratch")
    train = cfg.train.model_copy(update={"init": pinned or "scratch"})
    return cfg.model_copy(update={"train": train})


@step(enable_cache=False)
def train_model(split: SplitArtifact, inputs: InputsArtifact, config: dict) -> Annotated[TrainingArtifact, "training"]:
    if not inputs.train:
        return TrainingArtifact.nothing(inputs.reason)
    started = time.monotonic()
    name = run_name()
    tracking_uri = resolve_tracking_uri(experiment_config(config).registry)
    cfg = pinned_init(experiment_config(config), tracking_uri)
    history_file = run_dir(cfg) / "history.json"
    client = patient_registry_client(tracking_uri, cfg.registry.retry_deadline_s)
    with mlflow_run(client, cfg, name) as mlflow_run_id:
        client.set_tag(mlflow_run_id, TAG_INIT, cfg.train.init)
        log_metadata(metadata={"init": cfg.train.init, "inputs_fingerprint": inputs.fingerprint})
        logger = MLflowMetricLogger(mlflow_run_id, client)
        if cfg.backend.kind == "kubernetes":
            from components.data.published_split import publish_split
            from components.engine.checkpoint import load_checkpoint
            from components.kubernetes.launcher import launch_training
            from components.storage.s3 import s3_client

            s3 = s3_client(cfg.storage.endpoint_url, cfg.storage.region)
            published = publish_split(split.files(), s3, cfg.storage.bucket)
            launched = launch_training(cfg, run_id=name, split=published)  # the pod loads train.init itself
            checkpoint_uri, step = launched.checkpoint_uri, launched.step
            history = load_checkpoint(checkpoint_uri, s3).get("history") or [launched.metrics]  # the pod's full history
            logger.log_metrics(launched.metrics, step)
        else:
            from components.engine.trainer import train
            from components.serving.model_source import load_initial_weights

            with tempfile.TemporaryDirectory() as scratch:
                init = load_initial_weights(cfg.train.init, tracking_uri, scratch) if cfg.train.warm else None
            result = train(cfg, split.files(), logger=logger, init=init, progress=sys.stderr.isatty())
            checkpoint_uri, step, history = result.checkpoint_uri, result.step, result.history
        history_file.write_text(json.dumps(history))
    return TrainingArtifact(
        checkpoint_uri=checkpoint_uri,
        step=step,
        mlflow_run_id=mlflow_run_id,
        history_file=str(history_file),
        seconds=time.monotonic() - started,
        init=cfg.train.init,
    )
