"""`trs-pose run` (the pipeline) and `trs-pose demo` (services, synthetic data, pipeline, summary)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.options import config_options, resolve_config
from cli.servers import server_options

if TYPE_CHECKING:
    from pipelines.run_state import RunFailed
    from pipelines.step_reports import StepReport

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def _print_summary(summary, cfg, seconds: float) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    from cli.tables import print_table

    inputs = summary.outputs.get("inputs")
    if inputs is not None and not inputs.train:  # --if-changed and nothing new: one line, exit 0
        click.echo(f"{inputs.reason}; run {summary.run_name} skipped, nothing trained or registered")
        return
    table = Table(title=f"pipeline run {summary.run_name}: {summary.status} in {seconds / 60:.1f} min")
    table.add_column("what")
    table.add_column("value")
    metrics = summary.outputs.get("metrics")
    if metrics is not None:
        for key in ("AP", "AP50", "AP75", "APm", "APl", "AR"):
            if key in metrics.metrics:
                table.add_row(f"val {key}", f"{metrics.metrics[key]:.4f}")
    version = summary.outputs.get("model_version")
    if version is not None:
        table.add_row("registered", f"{version.name} v{version.version} (alias challenger)")
    promotion = summary.outputs.get("promotion")
    if promotion is not None:
        table.add_row("promotion", f"{promotion.decision}: {promotion.reason}")
    training = summary.outputs.get("training")
    if training is not None:
        table.add_row("checkpoint", training.checkpoint_uri)
        table.add_row("started from", training.init)
        table.add_row("MLflow run", training.mlflow_run_id)
    suggestions = summary.outputs.get("label_suggestions")
    if suggestions is not None and suggestions.images:
        where = f" ({suggestions.folder}; MLflow: suggestions/)" if suggestions.folder else ""
        table.add_row("label next", f"{len(suggestions.images)} images{where}")
    if cfg.registry.tracking_uri:
        table.add_row("MLflow UI", cfg.registry.tracking_uri)
    table.add_row("ZenML run", summary.run_name)
    print_table(table)
    if summary.dashboard_url:  # on a line of its own: a table cell would cut it to the terminal's width
        click.echo(f"ZenML dashboard: {summary.dashboard_url}")


class _WithoutTraceback(logging.Filter):
    """ZenML logs a failed step's traceback on the console, and, when the artifact store is down, the
    traceback of every failed log upload. The ZenML server keeps the step's traceback with the step
    run (`trs-pose runs show RUN`); the console gets one line each instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


def _print_step(report: StepReport) -> None:
    from cli.step_lines import step_line

    click.echo(step_line(report))


def _advice(exc: RunFailed) -> str:
    """What to do after a failed run; it says what `--resume` will accept."""
    from pipelines.run_state import DATA_LOCATION

    name = exc.run_name
    shown = f"`trs-pose runs show {name}` prints the traceback"
    if exc.failure.before_training:
        return (
            f"Nothing was trained or registered. Once the cause is fixed, `trs-pose run --resume {name}` continues "
            f"the run; with --config/--set, its config may differ only in {', '.join(DATA_LOCATION)} ({shown})."
        )
    return (
        f"Nothing was registered; `trs-pose run --resume {name}` continues the run once the cause is fixed ({shown})."
    )


def _run_or_explain(cfg, run_name: str | None, resume: str | None, servers, if_changed: bool = False):  # type: ignore[no-untyped-def]
    """Run (or resume) the pipeline, a line a step as it ends; a failed step becomes one clear line
    (its log has the details), with the violations of a failed validation below it."""
    from pipelines.run_state import RunFailed, RunRefused

    for name in (
        "zenml.orchestrators.local.local_orchestrator",
        "zenml.orchestrators.step_launcher",
        "zenml.log_stores.artifact.artifact_log_exporter",
    ):
        logging.getLogger(name).addFilter(_WithoutTraceback())
    from pipelines.runner import resume_training_pipeline, run_training_pipeline

    try:
        if resume is not None:
            return resume_training_pipeline(resume, cfg, servers, on_step=_print_step)
        return run_training_pipeline(cfg, run_name, servers, on_step=_print_step, if_changed=if_changed)
    except RunRefused as exc:
        raise click.ClickException(str(exc)) from exc
    except RunFailed as exc:
        details = "".join(f"\n  {line}" for line in exc.failure.details)
        raise click.ClickException(f"{exc}. {_advice(exc)}{details}") from exc
    except RuntimeError as exc:
        raise click.ClickException(f"{exc}. Nothing was registered; the failing step's log is above.") from exc


@click.command()
@config_options
@click.option("--run-name", default=None, help="ZenML run name (default: <config name>-<date>-<time>).")
@server_options(mlflow=True, s3=True, zenml=True)
@click.option(
    "--no-local-services",
    is_flag=True,
    help="Do not default MLflow/S3/ZenML to `trs-pose services up` (ZENML_STORE_URL + _API_KEY required).",
)
@click.option(
    "--resume",
    "resume",
    default=None,
    metavar="RUN",
    help="Continue run RUN (killed or failed): its finished steps are reused, training restarts from its last "
    "checkpoint. With --config/--set the config must equal the run's; before training, its data location may "
    "change (the run then starts again from ingest).",
)
@click.option(
    "--if-changed",
    is_flag=True,
    help="Train only when the inputs are new: labels, unlabeled sources or recipe that no registered version "
    "(the champion, or a challenger that lost to it) already has; else stop after the split and exit 0.",
)
@click.option("--verbose", "-v", is_flag=True, help="Also print the full resolved config before the run.")
def run(
    config_path: str | None,
    overrides: tuple[str, ...],
    run_name: str | None,
    tracking_uri: str | None,
    endpoint_url: str | None,
    zenml_url: str | None,
    no_local_services: bool,
    resume: str | None,
    if_changed: bool,
    verbose: bool,
) -> None:
    """Run the training pipeline: ingest -> validate -> boxes -> split -> inputs -> train -> evaluate ->
    register -> promote -> suggest.

    With --if-changed (what the retraining CronJob runs) a run whose inputs a registered version already
    has ends after the split with "nothing new since vN", exit 0, and shows as skipped in `runs list`.

    Prints a line for each step as it ends, then a summary. The full resolved config goes to the run
    folder (runs/NAME/RUN/config.yaml) and to MLflow (config/resolved.yaml); --verbose prints it too.

    MLflow, S3 and ZenML come from the flags, then the config (registry.tracking_uri,
    storage.endpoint_url), then the environment (MLFLOW_TRACKING_URI, AWS_*, ZENML_STORE_URL and
    ZENML_STORE_API_KEY), then the servers of `trs-pose services up`. With --no-local-services the
    last is skipped, so the ZenML variables are required.
    """
    from components.services.resolution import resolve_servers

    if resume is not None and run_name is not None:
        raise click.UsageError("--resume continues an existing run under its own name; drop --run-name")
    if resume is not None and if_changed:
        raise click.UsageError("--if-changed decides whether a new run trains; a resumed run keeps its decision")
    given = resume is None or config_path is not None or bool(overrides)
    cfg = resolve_config(config_path, overrides)
    if given:  # before any server: a wrong data location is one line, and nothing is written
        from components.data.prepare import check_before_run

        check_before_run(cfg.data)
    servers = resolve_servers(
        cfg if given else None,
        tracking_uri=tracking_uri,
        endpoint_url=endpoint_url,
        zenml_url=zenml_url,
        use_local=not no_local_services,
    )
    # a server that is named but does not answer first; then what is missing: a run that would leave no
    # record in the lineage never starts. A resume without a config uses the run's own endpoints.
    servers.probe(mlflow=given, s3=given, zenml=True)
    servers.zenml_endpoint()
    if given:
        servers.tracking_uri()
        servers.require_s3_key("a pipeline run (its lease, split, checkpoints and ZenML artifacts)")
        cfg = servers.apply(cfg)
        if verbose:
            click.echo(cfg.to_yaml())
    started = time.monotonic()
    summary = _run_or_explain(cfg if given else None, run_name, resume, servers, if_changed)
    _print_summary(summary, cfg, time.monotonic() - started)


@click.command()
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a demo config field.")
@click.option("--verbose", "-v", is_flag=True, help="Also print the full resolved config before the run.")
def demo(overrides: tuple[str, ...], verbose: bool) -> None:
    """The README's demo: start the services, make synthetic people, run the pipeline on a CPU budget."""
    from components.services.manager import services_up
    from components.services.resolution import resolve_servers

    started = time.monotonic()
    cfg = resolve_config(str(DEMO_CONFIG), overrides)  # a bad --set fails before any server starts
    endpoints = services_up()
    click.echo(f"services: {endpoints}")
    servers = resolve_servers(cfg)
    cfg = servers.apply(cfg)
    if verbose:
        click.echo(cfg.to_yaml())
    summary = _run_or_explain(cfg, None, None, servers)
    _print_summary(summary, cfg, time.monotonic() - started)
    click.echo("Stop the servers with `trs-pose services down` (or `make services-down`).")
