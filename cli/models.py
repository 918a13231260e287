"""`trs-pose models list | promote VERSION | rollback`: the registry, for people."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.options import config_options, resolve_config
from components.config import ExperimentConfig

if TYPE_CHECKING:
    from components.registry.mlflow_client import MlflowClientLike


def _registry(
    config_path: str | None, overrides: tuple[str, ...], tracking_uri: str | None
) -> tuple[MlflowClientLike, ExperimentConfig]:
    """(client, config) from the config, with --tracking-uri winning; S3 (the registry lease) as for `run`."""
    from components.registry.mlflow_client import registry_client, resolve_tracking_uri
    from components.services.process import ServiceError
    from pipelines.runner import use_local_services

    cfg = resolve_config(config_path, overrides)
    try:
        cfg = use_local_services(cfg) if tracking_uri is None else cfg
        uri = tracking_uri or resolve_tracking_uri(cfg.registry)
    except ServiceError as exc:
        raise click.ClickException(f"{exc} (or pass --tracking-uri / set MLFLOW_TRACKING_URI)") from exc
    return registry_client(uri), cfg


tracking_option = click.option(
    "--tracking-uri",
    default=None,
    help="MLflow server (default: registry.tracking_uri, $MLFLOW_TRACKING_URI, else the one `services up` started).",
)


@click.group()
def models() -> None:
    """List, promote and roll back versions of the registered model (registry.model_name).

    `champion` is the version in service; each run registers a `challenger`. Promotion follows the
    pipeline's rule: better AP than the champion by registry.promotion_margin, on the same
    validation set; `--force` overrides it and says so in the version's tags.
    """


@models.command("list")
@config_options
@tracking_option
def list_command(config_path: str | None, overrides: tuple[str, ...], tracking_uri: str | None) -> None:
    """Every version, newest first, with its aliases, AP, validation set and last decision."""
    from mlflow.exceptions import MlflowException
    from rich.console import Console
    from rich.table import Table

    from components.registry.lifecycle import list_versions

    client, cfg = _registry(config_path, overrides, tracking_uri)
    name = cfg.registry.model_name
    try:
        rows = list_versions(client, name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            click.echo(
                f"No model named {name!r} is registered at {client.tracking_uri} yet; `trs-pose run` registers one."
            )
            return
        raise click.ClickException(f"model {name!r}: {exc.message}") from exc
    table = Table(title=f"registered model {name}")
    for column in ("version", "aliases", "AP", "val set", "decision", "ONNX", "run", "created (UTC)"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.version,
            ", ".join(row.aliases) or "-",
            "-" if row.ap is None else f"{row.ap:.4f}",
            (row.val_fingerprint or "-")[:12],
            row.decision or "-",
            "yes" if row.onnx else "-",
            (row.run_id or "-")[:12],
            row.created.strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(table)


@models.command()
@click.argument("version")
@config_options
@tracking_option
@click.option("--force", is_flag=True, help="Promote even when the rules say no (recorded as 'forced').")
def promote(
    version: str, config_path: str | None, overrides: tuple[str, ...], tracking_uri: str | None, force: bool
) -> None:
    """Make VERSION the champion if it beats the current one (same rules as the pipeline)."""
    from mlflow.exceptions import MlflowException

    from components.registry.lifecycle import RegistryError
    from components.registry.promotion_lease import promote_serialised

    client, cfg = _registry(config_path, overrides, tracking_uri)
    name = cfg.registry.model_name
    try:
        decision = promote_serialised(client, cfg, version, force=force)
    except (RegistryError, MlflowException) as exc:
        raise click.ClickException(str(exc)) from exc
    verdict = "now champion" if decision.promoted else "not promoted"
    click.echo(f"{name} version {version}: {verdict} ({decision.decision}): {decision.reason}")
    if not decision.promoted and decision.decision != "already champion":
        raise SystemExit(1)


@models.command()
@config_options
@tracking_option
def rollback(config_path: str | None, overrides: tuple[str, ...], tracking_uri: str | None) -> None:
    """Give `champion` back to the version that held it before the current one."""
    from mlflow.exceptions import MlflowException

    from components.registry.lifecycle import RegistryError
    from components.registry.promotion_lease import rollback_serialised

    client, cfg = _registry(config_path, overrides, tracking_uri)
    name = cfg.registry.model_name
    try:
        replaced, restored = rollback_serialised(client, cfg)
    except (RegistryError, MlflowException) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{name}: champion rolled back from version {replaced} to version {restored}")
