"""Fail in seconds, with the URL, when a server a command needs does not answer.

MLflow's and ZenML's HTTP clients retry with exponential back-off for minutes before they give up on a
refused or black-holed address. One TCP connect with a short timeout, before the client is used,
tells a user at once which URL is wrong and what to check.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from components.errors import TrsPoseError

CONNECT_TIMEOUT_S = 3.0  # every network client's connect timeout (MLflow probe, boto3, Kubernetes)


class ServiceUnreachable(TrsPoseError, RuntimeError):
    """A server (MLflow, S3, ZenML, Kubernetes API) that refused or did not answer a TCP connect."""


def _host_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def require_reachable(url: str, what: str, check: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ServiceUnreachable naming `what`, `url` and `check` unless a TCP connect succeeds.

    Non-HTTP URIs (file:, sqlite:, databricks) are left to their clients.
    """
    address = _host_port(url)
    if address is None:
        return
    try:
        with socket.create_connection(address, timeout=timeout):
            return
    except TimeoutError:
        reason = f"no answer within {timeout:g} s"
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    raise ServiceUnreachable(f"{what} at {url} is not reachable ({reason}): {check}")


MLFLOW_CHECK = "check registry.tracking_uri, --tracking-uri or $MLFLOW_TRACKING_URI, and that the server runs"
S3_CHECK = "check --endpoint-url, storage.endpoint_url or $AWS_ENDPOINT_URL_S3, and that the store runs"
