"""Run the training pipeline from Python or the CLI: environment, ZenML server and stack, and a summary."""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from components.config import ExperimentConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
ZENML_STATE_DIR = ".state/zenml"


def prepare_zenml(state_dir: str | Path = ZENML_STATE_DIR) -> None:
    """Keep ZenML's client config in a project-local folder (runs and artifacts live on the server and
    in S3) and its analytics off; must run before import."""
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


def local_credentials() -> None:
    """The local services' S3 key in this process's environment, when no other is set and they are up."""
    from components.services.process import ServiceError

    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return
    with suppress(ServiceError, OSError):
        use_local_services(ExperimentConfig())


@dataclass(frozen=True)
class RunSummary:
    run_name: str
    status: str
    outputs: dict[str, Any]  # artifact name -> loaded value, for the steps that completed
    dashboard_url: str | None = None  # the run's page on the ZenML server


def per_run_checkpoints(cfg: ExperimentConfig, run_name: str) -> ExperimentConfig:
    """Each pipeline run trains into its own checkpoint folder, so a retried run resumes its own
    checkpoints and a new run never resumes an older run's weights."""
    checkpoint = cfg.train.checkpoint
    folder = f"{checkpoint.dir.rstrip('/')}/{run_name}"
    train = cfg.train.model_copy(update={"checkpoint": checkpoint.model_copy(update={"dir": folder})})
    return cfg.model_copy(update={"train": train})


def connect_zenml() -> None:
    """This process's ZenML client, connected to the server (pipelines/zenml_stack.py)."""
    from pipelines.zenml_stack import connect, zenml_endpoint

    prepare_zenml()
    connect(zenml_endpoint())


def activate_run_stack(cfg: ExperimentConfig) -> str:
    """On a connected client: activate the stack whose artifact store is the config's S3 bucket;
    returns the stack's name."""
    from pipelines.zenml_stack import activate_s3_stack

    endpoint = cfg.storage.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return activate_s3_stack(cfg.storage.bucket, endpoint, cfg.storage.region)


def run_training_pipeline(cfg: ExperimentConfig, run_name: str | None = None) -> RunSummary:
    """Run `training` on the ZenML server's S3 stack (local orchestrator) and load its outputs."""
    connect_zenml()
    activate_run_stack(cfg)
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(REPO_ROOT))
    from pipelines.run_state import (
        RunFailed,
        RunRefused,
        failure_line,
        mark_stale_runs,
        refuse_existing_name,
        run_lease,
        take_lease,
    )
    from pipelines.training import training

    name = run_name or f"{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}"
    refuse_existing_name(name)
    mark_stale_runs()
    resolved = per_run_checkpoints(cfg, name)
    lease = run_lease(resolved, name)
    holder = take_lease(lease, resolved)
    if holder is not None:
        raise RunRefused(f"{resolved.train.checkpoint.dir} is in use by {holder}; choose another --run-name")
    with lease.kept():
        try:
            training.with_options(run_name=name)(config=resolved.model_dump(mode="json"))
        except RuntimeError as exc:
            raise RunFailed(failure_line(name), name) from exc
    return summarize_run(name)


def resume_training_pipeline(run_name: str, cfg: ExperimentConfig | None = None) -> RunSummary:
    """Continue a failed or silently dead run: its successful steps are reused (ZenML replay),
    training resumes from its last checkpoint. `cfg`, when given, must equal the run's config."""
    connect_zenml()
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(REPO_ROOT))
    from pipelines.run_state import RunFailed, failure_line, prepare_resume
    from pipelines.training import training

    resumption = prepare_resume(run_name, cfg)
    activate_run_stack(resumption.config)  # the stack on the run's own bucket
    with resumption.lease.kept():
        try:
            training.with_options(run_name=resumption.run_name).replay(
                pipeline_run=resumption.latest.id, skip_successful_steps=True
            )
        except RuntimeError as exc:
            raise RunFailed(failure_line(resumption.run_name), resumption.run_name) from exc
    return summarize_run(resumption.run_name)


def summarize_run(run_name: str) -> RunSummary:
    from zenml.client import Client
    from zenml.utils.dashboard_utils import get_run_url

    run = Client().get_pipeline_run(run_name)
    outputs: dict[str, Any] = {}
    for step_run in run.steps.values():
        for name, artifacts in step_run.outputs.items():
            if artifacts:
                outputs[name] = artifacts[0].load()
    status = str(run.status.value if hasattr(run.status, "value") else run.status)
    return RunSummary(run.name, status, outputs, get_run_url(run))
