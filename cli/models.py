"""`trs-pose models list | promote VERSION | rollback`: the registry, for people."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.errors import UserError
from cli.options import config_options, resolve_config
from cli.servers import server_options
from components.config import ExperimentConfig

if TYPE_CHECKING:
    from components.registry.mlflow_client import MlflowClientLike


def _registry(
    config_path: str | None,
    overrides: tuple[str, ...],
    tracking_uri: str | None,
    endpoint_url: str | None = None,
    lease: bool = False,
) -> tuple[MlflowClientLike, ExperimentConfig]:
    """(client, config) on the resolved servers; with `lease`, the S3 store that holds the registry lease too."""
    from components.registry.mlflow_client import registry_client
    from components.services.resolution import resolve_servers

    cfg = resolve_config(config_path, overrides)
    servers = resolve_servers(cfg, tracking_uri=tracking_uri, endpoint_url=endpoint_url)
    uri = servers.tracking_uri()
    servers.probe(mlflow=True, s3=lease)
    if lease:
        servers.require_s3_key(f"the registry lease of {cfg.registry.model_name}")
        servers.export()
    return registry_client(uri), servers.apply(cfg)


def version_number(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """VERSION is a version number as `models list` shows it: a usage error otherwise."""
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"{value!r} is not a version number (1, 2, ...; see `trs-pose models list`)")
    return str(int(value))


def missing_version(client: MlflowClientLike, name: str, version: str) -> str | None:
    """One line naming the model and its versions when `version` is not one of them; None when it is."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, version)
        return None
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    if not versions:
        return f"no model named {name!r} is registered at {client.tracking_uri}"
    return f"{name} has no version {version}; its versions are {', '.join(map(str, versions))}"


@click.group()
def models() -> None:
    """List, promote and roll back versions of the registered model (registry.model_name).

    `champion` is the version in service; each run registers a `challenger`. Promotion follows the
    pipeline's rule: better AP than the champion by registry.promotion_margin, on the same
    validation set; `--force` overrides it and says so in the version's tags.
    """


@models.command("list")
@config_options
@server_options(mlflow=True)
def list_command(config_path: str | None, overrides: tuple[str, ...], tracking_uri: str | None) -> None:
    """Every version, newest first, with its aliases, AP, validation set and last decision."""
    from mlflow.exceptions import MlflowException
    from rich.table import Table

    from cli.tables import print_table
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
    print_table(table)


@models.command()
@click.argument("version", callback=version_number)
@config_options
@server_options(mlflow=True, s3=True)
@click.option("--force", is_flag=True, help="Promote even when the rules say no (recorded as 'forced').")
def promote(
    version: str,
    config_path: str | None,
    overrides: tuple[str, ...],
    tracking_uri: str | None,
    endpoint_url: str | None,
    force: bool,
) -> None:
    """Make VERSION the champion if it beats the current one (same rules as the pipeline).

    A version that does not beat the champion is not promoted: the decision and the reason go to
    stderr, exit 1.
    """
    from mlflow.exceptions import MlflowException

    from components.registry.lifecycle import RegistryError
    from components.registry.promotion_lease import promote_serialised

    client, cfg = _registry(config_path, overrides, tracking_uri, endpoint_url, lease=True)
    name = cfg.registry.model_name
    missing = missing_version(client, name, version)
    if missing is not None:
        raise UserError(missing)
    try:
        decision = promote_serialised(client, cfg, version, force=force)
    except (RegistryError, MlflowException) as exc:
        raise click.ClickException(str(exc)) from exc
    if not decision.promoted and decision.decision != "already champion":
        raise UserError(f"{name} version {version}: not promoted ({decision.decision}): {decision.reason}")
    verdict = "now champion" if decision.promoted else "not promoted"
    click.echo(f"{name} version {version}: {verdict} ({decision.decision}): {decision.reason}")


@models.command()
@config_options
@server_options(mlflow=True, s3=True)
def rollback(
    config_path: str | None, overrides: tuple[str, ...], tracking_uri: str | None, endpoint_url: str | None
) -> None:
    """Give `champion` back to the version that held it before the current one."""
    from mlflow.exceptions import MlflowException

    from components.registry.lifecycle import RegistryError
    from components.registry.promotion_lease import rollback_serialised

    client, cfg = _registry(config_path, overrides, tracking_uri, endpoint_url, lease=True)
    name = cfg.registry.model_name
    try:
        replaced, restored = rollback_serialised(client, cfg)
    except (RegistryError, MlflowException) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{name}: champion rolled back from version {replaced} to version {restored}")
