"""`trs-pose services up | down | status`: the local SeaweedFS (S3), MLflow and ZenML servers."""

from __future__ import annotations

from pathlib import Path

import click

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where PID files, logs, data and endpoints.json live (default: $TRS_POSE_STATE_DIR, else .state/services under the project root).",
)


@click.group()
def services() -> None:
    """Start, stop and inspect the local S3 (SeaweedFS), MLflow and ZenML servers, on 127.0.0.1 only.

    The S3 key pair comes from TRS_POSE_S3_ACCESS_KEY / TRS_POSE_S3_SECRET_KEY, or is generated once
    and kept (owner-only) in the state folder, as are ZenML's admin password and API key; only
    `services env --with-credentials` prints them.
    """


def _print_status(state_dir: Path | None) -> None:
    from rich.table import Table

    from cli.tables import print_table
    from components.services.manager import services_status

    table = Table(title="trs-pose services")
    for column in ("service", "state", "pid", "url", "log"):
        table.add_column(column)
    for row in services_status(state_dir):
        colour = "green" if row.state == "running" else "red" if row.state == "unhealthy" else "yellow"
        table.add_row(row.name, f"[{colour}]{row.state}[/{colour}]", str(row.pid or "-"), row.url or "-", str(row.log))
    print_table(table)


@services.command()
@state_dir_option
@click.option("--bucket", default="trs-pose", show_default=True, help="Bucket created for artifacts and data.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for each server's health check.")
def up(state_dir: Path | None, bucket: str, timeout: float) -> None:
    """Start SeaweedFS, MLflow and ZenML unless they already run (safe to repeat)."""
    from components.services.manager import services_up
    from components.services.process import ServiceError

    try:
        outcome = services_up(state_dir, bucket=bucket, timeout=timeout)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, what in outcome.items():
        click.echo(f"{name}: {what}")
    _print_status(state_dir)
    click.echo('Point other shells at them with: eval "$(trs-pose services env --with-credentials)"')


@services.command()
@state_dir_option
def down(state_dir: Path | None) -> None:
    """Stop the servers that `up` started from this state folder, and nothing else."""
    from components.services.manager import services_down

    for name, what in services_down(state_dir).items():
        click.echo(f"{name}: {what}")


@services.command()
@state_dir_option
def status(state_dir: Path | None) -> None:
    """Show each server's state, PID, URL and log file."""
    _print_status(state_dir)


@services.command()
@state_dir_option
@click.option("--with-credentials", is_flag=True, help="Also print the S3 key pair (for `eval`; keep it out of logs).")
def env(state_dir: Path | None, with_credentials: bool) -> None:
    """Print `export` lines that point MLflow, ZenML and boto3 clients at the running services (and
    keep MLflow's model downloads from printing a progress line a file).

    Use as: eval "$(trs-pose services env --with-credentials)". Without --with-credentials, trs-pose
    commands still find the keys in the state folder; other clients (boto3, `zenml`) need them.
    """
    import shlex

    from components.services.manager import local_services
    from components.services.process import ServiceError

    try:
        running = local_services(state_dir)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    variables = {
        "MLFLOW_TRACKING_URI": running.tracking_uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        **running.s3.environment(),
    }
    if running.zenml is not None:
        variables.update(running.zenml.environment())
    secret = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ZENML_STORE_API_KEY"}
    if not with_credentials:
        variables = {k: v for k, v in variables.items() if k not in secret}
    for name, value in variables.items():
        click.echo(f"export {name}={shlex.quote(value)}")
