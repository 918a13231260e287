"""`services up | down | status`: the local S3 store, MLflow and ZenML servers, tracked in a state folder.

The state folder (.state/services under the project root, or $TRS_POSE_STATE_DIR) holds everything: PID files,
logs, the servers' data, the generated S3 key pair and ZenML credentials (0600) and `endpoints.json`, which names the
ports and URLs (never a secret) so that other commands find the services again.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.atomic_files import write_atomically
from components.services.mlflow_server import MLflowServer
from components.services.process import (
    LOOPBACK,
    ServiceError,
    command_line,
    health_answers,
    is_our_process,
    read_pid,
    stop_process_group,
    write_pid,
)
from components.services.seaweedfs import S3Endpoint, SeaweedFSServer, load_or_create_credentials
from components.services.zenml_server import (
    ZenMLEndpoint,
    ZenMLServer,
    load_zenml_credentials,
)
from components.storage.s3 import ensure_bucket

STATE_DIR_ENV = "TRS_POSE_STATE_DIR"
ENDPOINTS_FILE = "endpoints.json"
SERVICE_NAMES = ("seaweedfs", "mlflow", "zenml")


STATE_SUBDIR = Path(".state") / "services"


def project_root(start: Path | None = None) -> Path:
    """The trs-pose clone a command belongs to, wherever it is run from.

    The nearest folder at or above `start` (the current directory) that already holds
    .state/services or is a trs-pose checkout; else the checkout this code runs from (an editable
    install); else `start` itself.
    """
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / STATE_SUBDIR).is_dir() or _is_checkout(folder):
            return folder
    installed = Path(__file__).resolve().parents[2]
    return installed if _is_checkout(installed) else start


def _is_checkout(folder: Path) -> bool:
    return (folder / "pyproject.toml").is_file() and (folder / "components" / "services").is_dir()


def default_state_dir() -> Path:
    """$TRS_POSE_STATE_DIR, else .state/services under the project root (not the current directory)."""
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV]).resolve()
    return project_root() / STATE_SUBDIR


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # "running", "unhealthy", "stopped", "stale pid file"
    pid: int | None
    url: str | None
    log: Path


@dataclass(frozen=True)
class LocalServices:
    """What clients need to use the running services: the S3 endpoint (with key), MLflow's URI and
    the ZenML server (URL and API key; None when `up` ran before ZenML was among the services)."""

    s3: S3Endpoint
    tracking_uri: str
    zenml: ZenMLEndpoint | None = None


def _read_endpoints(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / ENDPOINTS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _write_endpoints(state_dir: Path, endpoints: dict[str, Any]) -> None:
    write_atomically(state_dir / ENDPOINTS_FILE, json.dumps(endpoints, indent=2, sort_keys=True))


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is free
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def _running_pid(state_dir: Path, name: str, marker: str) -> int | None:
    pid = read_pid(state_dir / f"{name}.pid")
    return pid if pid is not None and is_our_process(pid, marker) else None


def _seaweedfs(state_dir: Path, bucket: str, ports: dict[str, int] | None) -> SeaweedFSServer:
    return SeaweedFSServer(state_dir, load_or_create_credentials(state_dir), bucket=bucket, ports=ports)


def _start_or_clean_up(server: SeaweedFSServer | MLflowServer | ZenMLServer, timeout: float) -> None:
    """Start; if it never becomes healthy, stop what was started rather than leave it unrecorded."""
    try:
        server.start(timeout=timeout)
    except BaseException:
        server.stop()
        raise


def services_up(state_dir: Path | None = None, bucket: str = "trs-pose", timeout: float = 120.0) -> dict[str, str]:
    """Start whatever is not running yet; returns {service: "started" | "already running"}.

    Ports are kept from the previous `up` when they are still free, so URLs stay stable across
    restarts; MLflow is restarted when the S3 endpoint it was started with has changed.
    """
    state_dir = (state_dir or default_state_dir()).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    endpoints = _read_endpoints(state_dir)
    outcome: dict[str, str] = {}

    recorded = endpoints.get("seaweedfs", {})
    seaweed = _seaweedfs(state_dir, bucket, recorded.get("ports"))
    if _running_pid(state_dir, seaweed.name, seaweed.marker) is not None:
        if not seaweed.endpoint.healthy():
            raise ServiceError(f"seaweedfs is running but S3 does not answer; see {seaweed.log_path}")
        ensure_bucket(seaweed.endpoint.client(), bucket)
        outcome["seaweedfs"] = "already running"
    else:
        if not (recorded.get("ports") and _ports_free(list(recorded["ports"].values()))):
            seaweed = _seaweedfs(state_dir, bucket, None)
        _start_or_clean_up(seaweed, timeout)
        assert seaweed.process is not None
        write_pid(state_dir / "seaweedfs.pid", seaweed.process.pid)
        outcome["seaweedfs"] = "started"
    s3 = seaweed.endpoint
    endpoints["seaweedfs"] = {"endpoint_url": s3.endpoint_url, "bucket": s3.bucket, "ports": seaweed.ports}
    _write_endpoints(state_dir, endpoints)

    recorded = endpoints.get("mlflow", {})
    mlflow = MLflowServer(state_dir, s3, port=recorded.get("port"))
    pid = _running_pid(state_dir, mlflow.name, mlflow.marker)
    if pid is not None and (recorded.get("s3_endpoint_url"), recorded.get("artifacts_destination")) != (
        s3.endpoint_url,
        mlflow.artifacts_destination,
    ):
        stop_process_group(pid, mlflow.marker)
        pid = None
    if pid is not None:
        if not health_answers(mlflow.tracking_uri):
            raise ServiceError(f"mlflow is running but /health does not answer; see {mlflow.log_path}")
        outcome["mlflow"] = "already running"
    else:
        if recorded.get("port") and not _ports_free([recorded["port"]]):
            mlflow = MLflowServer(state_dir, s3)
        _start_or_clean_up(mlflow, timeout)
        assert mlflow.process is not None
        write_pid(state_dir / "mlflow.pid", mlflow.process.pid)
        outcome["mlflow"] = "started"
    endpoints["mlflow"] = {
        "tracking_uri": mlflow.tracking_uri,
        "port": mlflow.port,
        "s3_endpoint_url": s3.endpoint_url,
        "artifacts_destination": mlflow.artifacts_destination,
    }
    _write_endpoints(state_dir, endpoints)
    outcome["zenml"] = _zenml_up(state_dir, endpoints, s3, timeout)
    return outcome


def _zenml_up(state_dir: Path, endpoints: dict[str, Any], s3: S3Endpoint, timeout: float) -> str:
    """Start the ZenML server on its previous port when free; its URL goes to endpoints.json."""
    recorded_port = endpoints.get("zenml", {}).get("port")
    zenml = ZenMLServer(state_dir, s3, port=recorded_port)
    if _running_pid(state_dir, zenml.name, zenml.marker) is not None:
        if not health_answers(zenml.url):
            raise ServiceError(f"zenml is running but /health does not answer; see {zenml.log_path}")
        zenml.endpoint()
        what = "already running"
    else:
        if recorded_port and not _ports_free([recorded_port]):  # something else took it meanwhile
            zenml = ZenMLServer(state_dir, s3)
        _start_or_clean_up(zenml, timeout)
        assert zenml.process is not None
        write_pid(state_dir / "zenml.pid", zenml.process.pid)
        what = "started"
    endpoints["zenml"] = {"url": zenml.url, "port": zenml.port}
    _write_endpoints(state_dir, endpoints)
    return what


def _markers(state_dir: Path) -> dict[str, str]:
    """The command-line marker of each service started from this state folder."""
    return {
        "seaweedfs": f"-dir={state_dir / 'seaweedfs'}",
        "mlflow": f"sqlite:///{state_dir / 'mlflow' / 'mlflow.db'}",
        "zenml": f"--app-dir={state_dir / 'zenml'}",
    }


def services_down(state_dir: Path | None = None) -> dict[str, str]:
    """Stop only the processes `up` started from this state folder; returns {service: what happened}."""
    state_dir = (state_dir or default_state_dir()).resolve()
    markers = _markers(state_dir)
    outcome: dict[str, str] = {}
    for name in reversed(SERVICE_NAMES):  # ZenML and MLflow first: they write to S3
        pid_file = state_dir / f"{name}.pid"
        pid = read_pid(pid_file)
        if pid is None:
            outcome[name] = "not running"
            continue
        if not is_our_process(pid, markers[name]):
            outcome[name] = (
                "stale pid file removed" if command_line(pid) is None else "pid belongs to another process; left alone"
            )
            pid_file.unlink(missing_ok=True)
            continue
        stop_process_group(pid, markers[name], timeout=3.0 if name == "seaweedfs" else 15.0)
        pid_file.unlink(missing_ok=True)
        outcome[name] = "stopped"
    return outcome


def services_status(state_dir: Path | None = None) -> list[ServiceStatus]:
    state_dir = (state_dir or default_state_dir()).resolve()
    endpoints = _read_endpoints(state_dir)
    markers = _markers(state_dir)
    rows = []
    for name in SERVICE_NAMES:
        pid = read_pid(state_dir / f"{name}.pid")
        url = endpoints.get(name, {}).get({"seaweedfs": "endpoint_url", "mlflow": "tracking_uri"}.get(name, "url"))
        if pid is None:
            state = "stopped"
        elif not is_our_process(pid, markers[name]):
            state = "stale pid file"
        elif name == "seaweedfs":
            state = "running" if _s3_answers(state_dir) else "unhealthy"
        else:
            state = "running" if url and health_answers(url) else "unhealthy"
        rows.append(ServiceStatus(name, state, pid, url, state_dir / f"{name}.log"))
    return rows


def _s3_answers(state_dir: Path) -> bool:
    try:
        return local_services(state_dir, require_mlflow=False).s3.healthy()
    except ServiceError:
        return False


def local_services(state_dir: Path | None = None, require_mlflow: bool = True) -> LocalServices:
    """The endpoints of services started by `up` (for commands that default to the local services)."""
    state_dir = (state_dir or default_state_dir()).resolve()
    endpoints = _read_endpoints(state_dir)
    if "seaweedfs" not in endpoints or (require_mlflow and "mlflow" not in endpoints):
        raise ServiceError(
            f"no local services recorded in {state_dir}; run `trs-pose services up` first "
            f"(or set ${STATE_DIR_ENV} to the state folder they were started with)"
        )
    credentials = load_or_create_credentials(state_dir)
    recorded = endpoints["seaweedfs"]
    s3 = S3Endpoint(recorded["endpoint_url"], credentials.access_key, credentials.secret_key, recorded["bucket"])
    zenml = None
    zenml_credentials = load_zenml_credentials(state_dir) if "zenml" in endpoints else None
    if zenml_credentials is not None and zenml_credentials.api_key:
        zenml = ZenMLEndpoint(endpoints["zenml"]["url"], zenml_credentials.api_key)
    return LocalServices(s3, endpoints.get("mlflow", {}).get("tracking_uri", ""), zenml)
