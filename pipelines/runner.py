"""Run the training pipeline from Python or the CLI: environment, ZenML server and stack, and a summary."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from components.config import ExperimentConfig

if TYPE_CHECKING:
    from components.services.resolution import Servers
    from pipelines.step_reports import StepReport

REPO_ROOT = Path(__file__).resolve().parents[1]
ZENML_STATE_DIR = ".state/zenml"
CONFIG_FILE = "config.yaml"


def prepare_zenml(state_dir: str | Path = ZENML_STATE_DIR) -> None:
    """Keep ZenML's client config in a project-local folder (runs and artifacts live on the server and
    in S3) and its analytics off; must run before import."""
    os.environ.setdefault("ZENML_CONFIG_PATH", str(Path(state_dir).resolve()))
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")
    os.environ.setdefault("ZENML_ENABLE_RICH_TRACEBACK", "false")
    os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")


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


def connect_zenml(servers: Servers) -> None:
    """This process's ZenML client on the resolved server (checked to answer first, so a server that is
    down fails in seconds instead of retrying for half a minute), with the resolved S3 key in the
    environment for the artifact store and the run leases."""
    from pipelines.zenml_stack import connect

    endpoint = servers.zenml_endpoint()
    servers.probe(zenml=True)
    servers.export()
    prepare_zenml()
    connect(endpoint)


def activate_run_stack(cfg: ExperimentConfig) -> str:
    """On a connected client: activate the stack whose artifact store is the config's S3 bucket;
    returns the stack's name."""
    from pipelines.zenml_stack import activate_s3_stack

    endpoint = cfg.storage.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return activate_s3_stack(cfg.storage.bucket, endpoint, cfg.storage.region)


def write_run_config(cfg: ExperimentConfig, run_name: str) -> Path:
    """The run's full resolved config in its run folder (MLflow gets the same at the train step)."""
    from components.registry.run_logging import redact
    from steps.context import run_folder

    path = run_folder(cfg, run_name) / CONFIG_FILE
    path.write_text(yaml.safe_dump(redact(cfg.model_dump(mode="json")), sort_keys=False))
    return path


def run_training_pipeline(
    cfg: ExperimentConfig,
    run_name: str | None = None,
    servers: Servers | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    if_changed: bool = False,
) -> RunSummary:
    """Run `training` on the ZenML server's S3 stack (local orchestrator) and load its outputs;
    `on_step` gets each step's outputs as it ends. With `if_changed` the run trains only on new inputs."""
    from components.services.resolution import resolve_servers

    connect_zenml(servers or resolve_servers(cfg))
    activate_run_stack(cfg)
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(REPO_ROOT))
    from pipelines.run_state import RunRefused, mark_stale_runs, refuse_existing_name, run_lease, take_lease
    from pipelines.training import training

    name = run_name or f"{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}"
    refuse_existing_name(name)
    mark_stale_runs()
    resolved = per_run_checkpoints(cfg, name)
    lease = run_lease(resolved, name)
    holder = take_lease(lease, resolved)
    if holder is not None:
        raise RunRefused(f"{resolved.train.checkpoint.dir} is in use by {holder}; choose another --run-name")
    write_run_config(resolved, name)
    with lease.kept(), _reporting(name, on_step):
        config = resolved.model_dump(mode="json")
        _explained(name, lambda: training.with_options(run_name=name)(config=config, if_changed=if_changed))
    return summarize_run(name)


def resume_training_pipeline(
    run_name: str,
    cfg: ExperimentConfig | None = None,
    servers: Servers | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> RunSummary:
    """Continue a failed or silently dead run: its successful steps are reused (ZenML replay),
    training resumes from its last checkpoint. `cfg`, when given, must equal the run's config, except
    for the data location of a run that failed before training, which then runs again from ingest."""
    from components.services.resolution import resolve_servers

    connect_zenml(servers or resolve_servers(cfg))
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(REPO_ROOT))
    from pipelines.run_state import prepare_resume
    from pipelines.training import training

    resumption = prepare_resume(run_name, cfg)
    activate_run_stack(resumption.config)  # the stack on the run's own bucket
    name = resumption.run_name
    write_run_config(resumption.config, name)
    with resumption.lease.kept(), _reporting(name, on_step):
        if resumption.from_start:
            config = resumption.config.model_dump(mode="json")
            if_changed = bool((resumption.latest.config.parameters or {}).get("if_changed", False))
            _explained(name, lambda: training.with_options(run_name=name)(config=config, if_changed=if_changed))
        else:
            _explained(
                name,
                lambda: training.with_options(run_name=name).replay(
                    pipeline_run=resumption.latest.id, skip_successful_steps=True
                ),
            )
    return summarize_run(name)


def _reporting(run_name: str, on_step: Callable[[StepReport], None] | None) -> AbstractContextManager[None]:
    from pipelines.step_reports import reporting_steps

    return nullcontext() if on_step is None else reporting_steps(run_name, on_step)


def _explained(run_name: str, execute: Callable[[], object]) -> None:
    """A failed step becomes RunFailed naming it and its error (ZenML raises a bare RuntimeError)."""
    from pipelines.run_state import RunFailed, first_failure

    try:
        execute()
    except RuntimeError as exc:
        raise RunFailed(first_failure(run_name), run_name) from exc


def summarize_run(run_name: str) -> RunSummary:
    from zenml.client import Client
    from zenml.utils.dashboard_utils import get_run_url

    run = Client().get_pipeline_run(run_name, allow_name_prefix_match=False)
    outputs: dict[str, Any] = {}
    for step_run in run.steps.values():
        for name, artifacts in step_run.outputs.items():
            if artifacts:
                outputs[name] = artifacts[0].load()
    status = str(run.status.value if hasattr(run.status, "value") else run.status)
    return RunSummary(run.name, status, outputs, get_run_url(run))
