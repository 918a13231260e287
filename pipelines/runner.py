"""Run the training pipeline from Python or the CLI: environment, ZenML store, and a summary."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from components.config import ExperimentConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
ZENML_STATE_DIR = ".state/zenml"


def prepare_zenml(state_dir: str | Path = ZENML_STATE_DIR) -> None:
    """Keep ZenML's store in a project-local folder and its analytics off; must run before import."""
    os.environ.setdefault("ZENML_CONFIG_PATH", str(Path(state_dir).resolve()))
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")
    os.environ.setdefault("ZENML_ENABLE_RICH_TRACEBACK", "false")
    os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")


def use_local_services(cfg: ExperimentConfig) -> ExperimentConfig:
    """Point MLflow and S3 at the servers `trs-pose services up` started, unless the config or the
    environment already names others. Credentials go to this process's environment only."""
    if cfg.registry.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
        return cfg
    from components.services.manager import local_services

    services = local_services()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", services.s3.access_key)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", services.s3.secret_key)
    os.environ.setdefault("AWS_DEFAULT_REGION", services.s3.region)
    registry = cfg.registry.model_copy(update={"tracking_uri": services.tracking_uri})
    storage = cfg.storage
    if storage.endpoint_url is None:
        storage = storage.model_copy(update={"endpoint_url": services.s3.endpoint_url, "bucket": services.s3.bucket})
        os.environ.setdefault("AWS_ENDPOINT_URL_S3", services.s3.endpoint_url)
    return cfg.model_copy(update={"registry": registry, "storage": storage})


@dataclass(frozen=True)
class RunSummary:
    run_name: str
    status: str
    outputs: dict[str, Any]  # artifact name -> loaded value, for the steps that completed


def per_run_checkpoints(cfg: ExperimentConfig, run_name: str) -> ExperimentConfig:
    """Each pipeline run trains into its own checkpoint folder, so a retried run resumes its own
    checkpoints and a new run never resumes an older run's weights."""
    checkpoint = cfg.train.checkpoint
    folder = f"{checkpoint.dir.rstrip('/')}/{run_name}"
    train = cfg.train.model_copy(update={"checkpoint": checkpoint.model_copy(update={"dir": folder})})
    return cfg.model_copy(update={"train": train})


def run_training_pipeline(cfg: ExperimentConfig, run_name: str | None = None) -> RunSummary:
    """Run `training` on the active ZenML stack (local by default) and load its outputs."""
    prepare_zenml()
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(REPO_ROOT))
    from pipelines.training import training

    name = run_name or f"{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}"
    resolved = per_run_checkpoints(cfg, name)
    training.with_options(run_name=name)(config=resolved.model_dump(mode="json"))
    return summarize_run(name)


def summarize_run(run_name: str) -> RunSummary:
    from zenml.client import Client

    run = Client().get_pipeline_run(run_name)
    outputs: dict[str, Any] = {}
    for step_run in run.steps.values():
        for name, artifacts in step_run.outputs.items():
            if artifacts:
                outputs[name] = artifacts[0].load()
    return RunSummary(run.name, str(run.status.value if hasattr(run.status, "value") else run.status), outputs)
