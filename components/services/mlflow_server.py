"""A loopback MLflow tracking server: SQLite backend store, artifacts proxied to the S3 bucket.

Only the server holds the S3 credentials (in its environment, never on its command line); clients
upload and download artifacts through it (`mlflow-artifacts:`), so they need no S3 key at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from components.services.process import (
    LOOPBACK,
    ServiceError,
    find_free_ports,
    health_answers,
    start_process,
    stop_process_group,
    wait_until_healthy,
)
from components.services.seaweedfs import S3Endpoint


def mlflow_binary() -> str:
    beside = Path(sys.executable).parent / "mlflow"
    if beside.exists():
        return str(beside)
    found = shutil.which("mlflow")
    if not found:
        raise ServiceError("the `mlflow` command was not found; install the requirements")
    return found


class MLflowServer:
    """`mlflow server` with one worker (the machines here are small) and no background job runner."""

    name = "mlflow"

    def __init__(
        self,
        state_dir: Path,
        s3: S3Endpoint,
        port: int | None = None,
        workers: int = 1,
        artifacts_prefix: str = "mlflow",
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.s3 = s3
        self.port = port or find_free_ports(1)[0]
        self.workers = workers
        self.artifacts_destination = f"s3://{s3.bucket}/{artifacts_prefix.strip('/')}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.state_dir / "mlflow.log"

    @property
    def backend_store_uri(self) -> str:
        return f"sqlite:///{self.state_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def marker(self) -> str:
        """Appears in this server's command line only (its SQLite path), checked before stopping."""
        return self.backend_store_uri

    @property
    def tracking_uri(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        return [
            mlflow_binary(),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            self.artifacts_destination,
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_TRACKING_"))}
        env.update(self.s3.environment())
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # its huey workers cost 7 processes
        env["MLFLOW_ENABLE_TELEMETRY"] = "false"
        return env

    def start(self, timeout: float = 90.0, tie_to_parent: bool = False) -> str:
        """Start and wait for /health; returns the tracking URI."""
        (self.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
        self.process = start_process(
            self.command(), self.log_path, env=self.environment(), cwd=self.state_dir, tie_to_parent=tie_to_parent
        )
        wait_until_healthy(lambda: health_answers(self.tracking_uri), self.process, self.name, self.log_path, timeout)
        return self.tracking_uri

    def stop(self, timeout: float = 15.0) -> bool:
        if self.process is None:
            return False
        stopped = stop_process_group(self.process.pid, self.marker, timeout, self.process)
        self.process = None
        return stopped
