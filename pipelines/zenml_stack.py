"""Which ZenML server a run records into, and the stack whose artifact store is the S3 bucket.

A run never falls back to a store on this machine's disk: lineage that only one machine can see is
lost with it. The server is the one named by ZENML_STORE_URL + ZENML_STORE_API_KEY (a team's server,
CI, the CronJob's Secret), else the one `trs-pose services up` started.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Any

from components.services.process import ServiceError
from components.services.zenml_server import STORE_API_KEY_ENV, STORE_URL_ENV, ZenMLEndpoint

ARTIFACTS_PREFIX = "zenml"


def zenml_endpoint(allow_local: bool = True) -> ZenMLEndpoint:
    """The server from the environment, else (when allowed) the local services' one, whose key is
    also used when only its URL is exported (`services env` without --with-credentials); one clear
    line naming what is missing otherwise."""
    url, key = os.environ.get(STORE_URL_ENV), os.environ.get(STORE_API_KEY_ENV)
    if url and key:
        return ZenMLEndpoint(url, key)
    local = _local_zenml() if allow_local else None
    if local is not None and url in (None, local.url):
        return local
    if url or not allow_local:
        missing = [name for name, value in ((STORE_URL_ENV, url), (STORE_API_KEY_ENV, key)) if not value]
        raise ServiceError(
            f"{' and '.join(missing)} not set: every run records into a ZenML server "
            "(in Kubernetes: the Secret named by backend.kubernetes.zenml_secret, with both keys)"
        )
    raise ServiceError(f"no ZenML server: run `trs-pose services up`, or set {STORE_URL_ENV} and {STORE_API_KEY_ENV}")


def _local_zenml() -> ZenMLEndpoint | None:
    from components.services.manager import local_services

    try:
        return local_services(require_mlflow=False).zenml
    except ServiceError:
        return None


def connect(endpoint: ZenMLEndpoint) -> None:
    """Point this process's ZenML client at `endpoint` (also when ZenML was already loaded)."""
    os.environ.update(endpoint.environment())
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration

    GlobalConfiguration._reset_instance()
    Client._reset_instance()


def s3_stack_name(bucket: str, endpoint_url: str | None) -> str:
    """One stack per S3 store and bucket, so runs against different stores never share a name."""
    digest = hashlib.sha256(json.dumps([bucket, endpoint_url or ""]).encode()).hexdigest()[:8]
    return f"trs-pose-{bucket}-{digest}"


def activate_s3_stack(bucket: str, endpoint_url: str | None, region: str | None = None) -> str:
    """Register (once) an S3 artifact store at s3://bucket/zenml and a stack with the local
    orchestrator, and make it this client's active stack. S3 credentials are not stored in ZenML:
    whoever runs or loads artifacts brings them in the standard AWS_* variables."""
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.exceptions import EntityExistsError

    client = Client()
    name = s3_stack_name(bucket, endpoint_url)
    client_kwargs = {key: value for key, value in (("endpoint_url", endpoint_url), ("region_name", region)) if value}
    configuration: dict[str, Any] = {"path": f"s3://{bucket}/{ARTIFACTS_PREFIX}", "client_kwargs": client_kwargs}
    store = StackComponentType.ARTIFACT_STORE
    try:
        client.get_stack_component(store, name, allow_name_prefix_match=False)
    except KeyError:
        with contextlib.suppress(EntityExistsError):  # another process registered it meanwhile
            client.create_stack_component(name, "s3", store, configuration)
    try:
        client.get_stack(name, allow_name_prefix_match=False)
    except KeyError:
        with contextlib.suppress(EntityExistsError):
            client.create_stack(name, {store: name, StackComponentType.ORCHESTRATOR: "default"})
    if client.active_stack_model.name != name:
        client.activate_stack(name)
    return name
