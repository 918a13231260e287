"""`--tracking-uri`, `--endpoint-url`, `--zenml-url`: the flags every command that talks to a server takes.

They are the first source of components/services/resolution.py (flags, config, environment, the
local services); the help says the rest of the order, the same on every command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

LOCAL = "the local services of `trs-pose services up`"


def server_options(*, mlflow: bool = False, s3: bool = False, zenml: bool = False) -> Callable[..., Any]:
    """Adds the URL flags of the servers a command uses (secrets never come from flags)."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        if zenml:
            function = click.option(
                "--zenml-url",
                default=None,
                metavar="URL",
                help=f"ZenML server (default: $ZENML_STORE_URL, else {LOCAL}; its API key comes from "
                "$ZENML_STORE_API_KEY or the local services).",
            )(function)
        if s3:
            function = click.option(
                "--endpoint-url",
                default=None,
                metavar="URL",
                help=f"S3-compatible endpoint (default: storage.endpoint_url, $AWS_ENDPOINT_URL_S3, {LOCAL}, "
                "else AWS; its key comes from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the local services).",
            )(function)
        if mlflow:
            function = click.option(
                "--tracking-uri",
                default=None,
                metavar="URI",
                help=f"MLflow server holding runs and the registry (default: registry.tracking_uri, "
                f"$MLFLOW_TRACKING_URI, else {LOCAL}).",
            )(function)
        return function

    return decorate
