"""`--checkpoint` / `--model` / `--runtime` / `--tracking-uri`: where predict, evaluate and export get a model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cli.servers import server_options


@dataclass(frozen=True)
class OpenedModel:
    network: Any  # the student (torch nn.Module)
    cfg: Any  # its ExperimentConfig
    onnx_path: Path | None  # the registered version's model.onnx, if any
    label: str  # the checkpoint or registry URI, for titles


def model_source_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --model, --runtime and --tracking-uri (each command keeps its own --checkpoint help)."""
    function = server_options(mlflow=True)(function)
    function = click.option(
        "--runtime",
        type=click.Choice(["torch", "onnx"]),
        default="torch",
        show_default=True,
        help="Run the whole predictor in eager PyTorch or in ONNX Runtime (CPU).",
    )(function)
    return click.option(
        "--model",
        "model_uri",
        default=None,
        metavar="URI",
        help="A registered version instead of --checkpoint: models:/NAME@ALIAS or models:/NAME/VERSION.",
    )(function)


@contextmanager
def open_model(checkpoint: str | None, model_uri: str | None, tracking_uri: str | None) -> Iterator[OpenedModel]:
    """The student and config of --checkpoint or --model (downloaded into a scratch folder kept for the block)."""
    import tempfile

    from cli.evaluate import load_checkpoint_model

    if (checkpoint is None) == (model_uri is None):
        raise click.UsageError("give exactly one of --checkpoint or --model")
    from components.services.resolution import resolve_servers

    if checkpoint is not None:
        from components.storage.s3 import is_s3_uri

        if is_s3_uri(checkpoint):  # the same store and key as every other command
            servers = resolve_servers()
            servers.probe(s3=True)
            servers.require_s3_key(f"--checkpoint {checkpoint}")
            servers.export()
        network, cfg = load_checkpoint_model(checkpoint)
        yield OpenedModel(network, cfg, None, checkpoint)
        return
    assert model_uri is not None
    from components.serving.model_source import ModelSourceError, load_registered

    servers = resolve_servers(tracking_uri=tracking_uri)
    uri = servers.tracking_uri()
    servers.probe(mlflow=True)
    with tempfile.TemporaryDirectory(prefix="trs-pose-model-") as scratch:
        try:
            network, cfg, onnx_path = load_registered(model_uri, uri, scratch)
        except ModelSourceError as exc:
            raise click.ClickException(str(exc)) from exc
        yield OpenedModel(network, cfg, onnx_path, model_uri)
