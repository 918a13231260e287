"""Fixtures that start real servers (SeaweedFS S3, MLflow, ZenML) on free loopback ports.

All are session-scoped (one of each per test run; the machines are small) and stopped at the end.
Tests sharing them keep out of each other's way with their own bucket prefixes, experiment names
and registered-model names (`unique_name`).

    def test_upload(s3_server):
        client = s3_server.client()                      # boto3, right key
        with s3_server.aws_env():                         # AWS_* + MLFLOW_S3_ENDPOINT_URL set, restored after
            ...

    def test_register(mlflow_server):
        with mlflow_server.use():                          # MLFLOW_TRACKING_URI + mlflow.set_tracking_uri
            ...
        mlflow_server.client()                             # an MlflowClient bound to the server

    def test_lineage(zenml_server):                        # ZenMLEndpoint: url + api_key
        monkeypatch.setenv("ZENML_STORE_URL", zenml_server.url)   # or zenml_server.environment()
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from components.services.mlflow_server import MLflowServer
from components.services.process import ServiceError
from components.services.seaweedfs import S3Credentials, S3Endpoint, SeaweedFSServer
from components.services.zenml_server import ZenMLEndpoint, ZenMLServer

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_ACCESS_KEY = "TRSPOSETESTKEY"
TEST_SECRET_KEY = "trs-pose-test-secret-not-for-production"
TEST_BUCKET = "trs-pose"  # the config default (storage.bucket), so configs need no override


def unique_name(prefix: str) -> str:
    """A name no other test in the session uses: for experiments, models and key prefixes."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def record_local_services(
    state_dir: Path, s3: S3Endpoint, tracking_uri: str, zenml: ZenMLEndpoint | None = None
) -> Path:
    """A services state folder naming these servers, as `trs-pose services up` records its own: the
    session's servers then stand for the local services (TRS_POSE_STATE_DIR=state_dir), with no
    second set started. Secrets go to owner-only files, as `up` writes them."""
    from components.services.manager import ENDPOINTS_FILE
    from components.services.seaweedfs import CREDENTIALS_FILE, write_private
    from components.services.zenml_server import CREDENTIALS_FILE as ZENML_CREDENTIALS_FILE

    state_dir.mkdir(parents=True, exist_ok=True)
    endpoints: dict[str, Any] = {
        "seaweedfs": {"endpoint_url": s3.endpoint_url, "bucket": s3.bucket},
        "mlflow": {"tracking_uri": tracking_uri},
    }
    write_private(state_dir / CREDENTIALS_FILE, json.dumps({"access_key": s3.access_key, "secret_key": s3.secret_key}))
    if zenml is not None:
        endpoints["zenml"] = {"url": zenml.url}
        keys = {"admin_user": "admin", "admin_password": "-", "jwt_secret": "-", "api_key": zenml.api_key}
        write_private(state_dir / ZENML_CREDENTIALS_FILE, json.dumps(keys))
    (state_dir / ENDPOINTS_FILE).write_text(json.dumps(endpoints))
    return state_dir


@dataclass(frozen=True)
class MLflowService:
    tracking_uri: str
    s3: S3Endpoint
    artifacts_destination: str  # s3://bucket/prefix where the server writes artifacts

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    @contextmanager
    def use(self) -> Iterator[str]:
        """Point the mlflow fluent API (and child processes via the env) at this server for the block."""
        import mlflow

        saved_env = os.environ.get("MLFLOW_TRACKING_URI")
        saved_uri = mlflow.get_tracking_uri()
        os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        try:
            yield self.tracking_uri
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
            if saved_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = saved_env
            mlflow.set_tracking_uri(saved_uri)
            mlflow.set_registry_uri(saved_uri)


ServerT = TypeVar("ServerT", SeaweedFSServer, MLflowServer, ZenMLServer)


def start_server(make: Callable[[], ServerT], timeout: float) -> tuple[ServerT, Any]:
    """Start a server tied to this test process; a port taken between choosing and binding (other test
    runs share the host) gets one more try on fresh ports. Returns the server and what `start` gave."""
    server = make()
    try:
        return server, server.start(timeout=timeout, tie_to_parent=True)
    except ServiceError:
        server.stop()
        server = make()
        return server, server.start(timeout=timeout, tie_to_parent=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A real SeaweedFS S3 endpoint with key TEST_ACCESS_KEY/TEST_SECRET_KEY and bucket TEST_BUCKET."""
    state = tmp_path_factory.mktemp("seaweedfs-state")
    credentials = S3Credentials(TEST_ACCESS_KEY, TEST_SECRET_KEY)
    server, endpoint = start_server(lambda: SeaweedFSServer(state, credentials, bucket=TEST_BUCKET), 60.0)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(s3_server: S3Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLflowService]:
    """A real MLflow tracking server (SQLite) whose artifacts go to s3://TEST_BUCKET/mlflow."""
    state: Path = tmp_path_factory.mktemp("mlflow-state")
    server, tracking_uri = start_server(lambda: MLflowServer(state, s3_server), 120.0)
    try:
        yield MLflowService(tracking_uri, s3_server, server.artifacts_destination)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def zenml_server(s3_server: S3Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZenMLEndpoint]:
    """A real ZenML server (SQLite, dashboard) with a generated admin and an API key for clients."""
    state: Path = tmp_path_factory.mktemp("zenml-state")
    server, endpoint = start_server(lambda: ZenMLServer(state, s3_server), 180.0)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="module")
def zenml_home(tmp_path_factory: pytest.TempPathFactory, zenml_server: ZenMLEndpoint) -> Iterator[Path]:
    """This process's ZenML client (and its children's): its own config folder, connected to the session's
    ZenML server; the variables are restored when the module is done. Step and flavor sources resolve
    against the repository root: ZenML would infer it from the main module, which a pytest-xdist worker
    runs without a file."""
    from zenml.utils import source_utils

    home = tmp_path_factory.mktemp("zenml")
    variables = {"ZENML_CONFIG_PATH": str(home), **zenml_server.environment()}
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    source_utils.set_custom_source_root(str(REPO_ROOT))
    yield home
    source_utils.set_custom_source_root(None)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
