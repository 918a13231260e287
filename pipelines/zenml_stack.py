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

from components.services.zenml_server import ZenMLEndpoint

ARTIFACTS_PREFIX = "zenml"


def zenml_endpoint(allow_local: bool = True) -> ZenMLEndpoint:
    """The server from the environment, else (when allowed) the local services' one, whose key also
    completes its bare URL (`services env` without --with-credentials); one clear line naming what is
    missing otherwise (components/services/resolution.py decides, as for every command)."""
    from components.services.resolution import resolve_servers

    return resolve_servers(use_local=allow_local).zenml_endpoint()


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
