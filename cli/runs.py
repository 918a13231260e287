"""`trs-pose runs list | show`: the training pipeline's runs, their steps and why one failed, for people."""

from __future__ import annotations

import click

from cli.servers import server_options


@click.group()
def runs() -> None:
    """Pipeline runs in the ZenML store. A run whose process died without reporting (no live run
    lease) is marked failed here; `trs-pose run --resume RUN` continues it."""


@runs.command("list")
@click.option(
    "--limit", default=30, show_default=True, type=click.IntRange(1, 1000), help="How many runs, newest first."
)
@server_options(s3=True, zenml=True)
@click.option("--no-local-services", is_flag=True, help="Do not fall back to the servers of `trs-pose services up`.")
def list_command(limit: int, endpoint_url: str | None, zenml_url: str | None, no_local_services: bool) -> None:
    """Name, state, start, steps done, and why a run failed."""
    from rich.table import Table

    from cli.tables import print_table
    from components.services.resolution import resolve_servers
    from pipelines.runner import connect_zenml

    connect_zenml(resolve_servers(endpoint_url=endpoint_url, zenml_url=zenml_url, use_local=not no_local_services))
    from pipelines.run_state import list_runs

    states = list_runs(limit)
    if not states:
        click.echo("No pipeline runs yet; `trs-pose run --config configs/demo.yaml` starts one.")
        return
    table = Table(title="pipeline runs (training)")
    for column in ("run", "state", "started (UTC)", "steps", "note"):
        table.add_column(column)
    for state in states:
        started = state.started.strftime("%Y-%m-%d %H:%M:%S") if state.started else "-"
        table.add_row(state.name, state.status, started, f"{state.steps_done}/{state.steps_total}", state.note or "-")
    print_table(table)


@runs.command("show")
@click.argument("run_name", metavar="RUN")
@server_options(s3=True, zenml=True)
@click.option("--no-local-services", is_flag=True, help="Do not fall back to the servers of `trs-pose services up`.")
def show_command(run_name: str, endpoint_url: str | None, zenml_url: str | None, no_local_services: bool) -> None:
    """The steps of RUN with their state and time, and the traceback of a failed step as the ZenML
    server recorded it (it has it even when the artifact store holding the step logs is down)."""
    from rich.table import Table

    from cli.tables import print_table
    from components.services.resolution import resolve_servers
    from pipelines.runner import connect_zenml

    connect_zenml(resolve_servers(endpoint_url=endpoint_url, zenml_url=zenml_url, use_local=not no_local_services))
    from pipelines.run_state import RunRefused, step_states

    try:
        steps = step_states(run_name)
    except KeyError:
        raise RunRefused(f"no pipeline run named {run_name!r}; `trs-pose runs list` shows the runs") from None
    table = Table(title=f"pipeline run {run_name}")
    for column in ("step", "state", "seconds", "error"):
        table.add_column(column)
    for step in steps:
        seconds = f"{step.seconds:.1f}" if step.seconds is not None else "-"
        table.add_row(step.name, step.status, seconds, step.error.splitlines()[0] if step.error else "-")
    print_table(table)
    for step in steps:
        if step.traceback:
            click.echo(f"\ntraceback of step {step.name}:\n{step.traceback.rstrip()}")
