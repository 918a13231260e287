"""Which MLflow server to talk to, and the client calls we make to it (typed, so a fake or a wrapper
must offer exactly these).

Everything in trs-pose talks to MLflow through an explicit `MlflowClient` bound to one URI, never
through the fluent `mlflow.*` API's process-wide state; model_logging.py is the one exception, and
says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from components.config import RegistryConfig
from components.services.reachability import MLFLOW_CHECK, require_reachable

if TYPE_CHECKING:
    from mlflow.entities import Experiment, FileInfo, LoggedModel, LoggedModelOutput, Metric, Param, Run, RunTag
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel


class MlflowClientLike(Protocol):
    """The subset of `mlflow.tracking.MlflowClient` that trs-pose uses."""

    @property
    def tracking_uri(self) -> str: ...

    # runs
    def get_experiment_by_name(self, name: str) -> Experiment | None: ...
    def create_experiment(self, name: str) -> str: ...
    def create_run(
        self, experiment_id: str, *, tags: dict[str, str] | None = None, run_name: str | None = None
    ) -> Run: ...
    def get_run(self, run_id: str) -> Run: ...
    def search_runs(
        self, experiment_ids: list[str], filter_string: str = "", *, max_results: int = 1000
    ) -> list[Run]: ...
    def update_run(self, run_id: str, status: str | None = None) -> None: ...
    def set_tag(self, run_id: str, key: str, value: str) -> object: ...
    def set_terminated(self, run_id: str, *, status: str | None = None) -> None: ...
    def log_batch(
        self, run_id: str, *, metrics: Sequence[Metric] = (), params: Sequence[Param] = (), tags: Sequence[RunTag] = ()
    ) -> object: ...
    def log_text(self, run_id: str, text: str, artifact_file: str) -> None: ...
    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None: ...
    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]: ...
    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str: ...
    def create_logged_model(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        source_run_id: str | None = None,
        params: dict[str, str] | None = None,
    ) -> LoggedModel: ...
    def log_outputs(self, run_id: str, models: list[LoggedModelOutput]) -> None: ...

    # the model registry
    def get_registered_model(self, name: str) -> RegisteredModel: ...
    def create_registered_model(self, name: str, *, description: str | None = None) -> RegisteredModel: ...
    def set_registered_model_tag(self, name: str, key: str, value: str) -> None: ...
    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None: ...
    def search_model_versions(self, filter_string: str | None = None) -> list[ModelVersion]: ...
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        *,
        model_id: str | None = None,
    ) -> ModelVersion: ...
    def get_model_version(self, name: str, version: str) -> ModelVersion: ...
    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion: ...
    def get_model_version_download_uri(self, name: str, version: str) -> str: ...
    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...
    def delete_model_version(self, name: str, version: str) -> None: ...


def resolve_tracking_uri(registry_cfg: RegistryConfig) -> str:
    """The config's URI, else $MLFLOW_TRACKING_URI, else the server `trs-pose services up` started
    (components/services/resolution.py; never a store on this machine's disk)."""
    from components.config import ExperimentConfig
    from components.services.resolution import resolve_servers

    return resolve_servers(ExperimentConfig(registry=registry_cfg)).tracking_uri()


def registry_client(tracking_uri: str) -> MlflowClientLike:
    """A client whose runs and model registry both live at `tracking_uri`; ServiceUnreachable within
    seconds when the server does not answer."""
    from mlflow.tracking import MlflowClient

    require_reachable(tracking_uri, "the MLflow server", MLFLOW_CHECK)

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
