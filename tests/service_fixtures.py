"""Fixtures that start real servers (SeaweedFS S3, MLflow) on free loopback ports.

Both are session-scoped (one of each per test run; the machines are small) and stopped at the end.
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
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.services.mlflow_server import MLflowServer
from components.services.process import ServiceError
from components.services.seaweedfs import S3Credentials, S3Endpoint, SeaweedFSServer

TEST_ACCESS_KEY = "TRSPOSETESTKEY"
TEST_SECRET_KEY = "trs-pose-test-secret-not-for-production"
TEST_BUCKET = "trs-pose"  # the config default (storage.bucket), so configs need no override


def unique_name(prefix: str) -> str:
    """A name no other test in the session uses: for experiments, models and key prefixes."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A real SeaweedFS S3 endpoint with key TEST_ACCESS_KEY/TEST_SECRET_KEY and bucket TEST_BUCKET."""
    state = tmp_path_factory.mktemp("seaweedfs-state")
    credentials = S3Credentials(TEST_ACCESS_KEY, TEST_SECRET_KEY)
    server = SeaweedFSServer(state, credentials, bucket=TEST_BUCKET)
    try:
        endpoint = server.start(timeout=60.0, tie_to_parent=True)
    except ServiceError:  # a port taken between choosing and binding (other test runs share the host)
        server.stop()
        server = SeaweedFSServer(state, credentials, bucket=TEST_BUCKET)
        endpoint = server.start(timeout=60.0, tie_to_parent=True)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(s3_server: S3Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLflowService]:
    """A real MLflow tracking server (SQLite) whose artifacts go to s3://TEST_BUCKET/mlflow."""
    state: Path = tmp_path_factory.mktemp("mlflow-state")
    server = MLflowServer(state, s3_server)
    try:
        tracking_uri = server.start(timeout=120.0, tie_to_parent=True)
    except ServiceError:  # as above: retry once on fresh ports
        server.stop()
        server = MLflowServer(state, s3_server)
        tracking_uri = server.start(timeout=120.0, tie_to_parent=True)
    try:
        yield MLflowService(tracking_uri, s3_server, server.artifacts_destination)
    finally:
        server.stop()
