"""Patience with the MLflow server: which failures are transient, and a client that retries them.

MLflow's own HTTP layer retries each request 7 times with a doubling backoff (minutes when the
server is down); `limit_mlflow_http_retries` shortens that so one deadline, `registry.retry_deadline_s`,
bounds the wait, and `with_retries` (components.storage.retry) does the backing off.
"""

from __future__ import annotations

import os
import re
from typing import Any, cast

from components.registry.mlflow_client import MlflowClientLike, registry_client
from components.storage.retry import Patient, StoreUnavailable

_TRANSIENT_TEXT = ("Max retries exceeded", "Connection refused", "Connection aborted", "timed out", "timeout exception")
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}  # not INTERNAL_ERROR: every default
_SERVER_ERROR = re.compile(r"failed with error code 5\d\d")


def limit_mlflow_http_retries() -> None:
    """Two quick HTTP-level retries per request unless the user chose otherwise in the environment."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def is_transient_mlflow_error(exc: BaseException) -> bool:
    """The server unreachable, timing out or answering 5xx: worth retrying. Refusals by rule: not."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, StoreUnavailable):  # already retried to its deadline
        return False
    if isinstance(exc, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, MlflowException):
        return (
            exc.error_code in _TRANSIENT_CODES
            or any(text in exc.message for text in _TRANSIENT_TEXT)
            or _SERVER_ERROR.search(exc.message) is not None
        )
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient_mlflow_error(cause)


def _describe_call(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    shown = ", ".join(str(a) for a in args[:2] if isinstance(a, str | int))
    return f"{method}({shown})"


def patient_registry_client(tracking_uri: str, deadline_s: float) -> MlflowClientLike:
    """An MlflowClient whose calls retry transient failures for up to `deadline_s`."""
    limit_mlflow_http_retries()
    patient: Any = Patient(
        registry_client(tracking_uri),
        transient=is_transient_mlflow_error,
        deadline_s=deadline_s,
        endpoint=f"MLflow server {tracking_uri}",
        describe=_describe_call,
    )
    return cast(MlflowClientLike, patient)
