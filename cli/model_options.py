"""`--checkpoint` / `--model` / `--runtime` / `--tracking-uri`: where predict, evaluate and export get a model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click


@dataclass(frozen=True)
class OpenedModel:
    network: Any  # the student (torch nn.Module)
    cfg: Any  # its ExperimentConfig
    onnx_path: Path | None  # the registered version's model.onnx, if any
    label: str  # the checkpoint or registry URI, for titles


def model_source_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --model, --runtime and --tracking-uri (each command keeps its own --checkpoint help)."""
    function = click.option(
        "--tracking-uri",
        default=None,
        help="MLflow server holding the registry (default: $MLFLOW_TRACKING_URI, else the one `services up` started).",
    )(function)
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
    if checkpoint is not None:
        network, cfg = load_checkpoint_model(checkpoint)
        yield OpenedModel(network, cfg, None, checkpoint)
        return
    assert model_uri is not None
    from components.config import RegistryConfig
    from components.registry.mlflow_client import resolve_tracking_uri
    from components.services.process import ServiceError
    from components.serving.model_source import ModelSourceError, load_registered

    try:
        uri = tracking_uri or resolve_tracking_uri(RegistryConfig.model_validate({}))
    except ServiceError as exc:
        raise click.ClickException(f"{model_uri}: {exc} (pass --tracking-uri or set MLFLOW_TRACKING_URI)") from exc
    with tempfile.TemporaryDirectory(prefix="trs-pose-model-") as scratch:
        try:
            network, cfg, onnx_path = load_registered(model_uri, uri, scratch)
        except ModelSourceError as exc:
            raise click.ClickException(str(exc)) from exc
        yield OpenedModel(network, cfg, onnx_path, model_uri)
