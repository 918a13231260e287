"""`trs-pose run` (the pipeline) and `trs-pose demo` (services, synthetic data, pipeline, summary)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from cli.options import config_options, resolve_config

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def _print_summary(summary, cfg, seconds: float) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    console = Console()
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
        table.add_row("MLflow run", training.mlflow_run_id)
    if cfg.registry.tracking_uri:
        table.add_row("MLflow UI", cfg.registry.tracking_uri)
    table.add_row("ZenML run", summary.run_name)
    console.print(table)
    if summary.dashboard_url:  # on a line of its own: a table cell would cut it to the terminal's width
        click.echo(f"ZenML dashboard: {summary.dashboard_url}")


class _WithoutTraceback(logging.Filter):
    """ZenML logs a failed step's traceback on the console, and, when the artifact store is down, the
    traceback of every failed log upload. The ZenML server keeps the step's traceback with the step
    run (`trs-pose runs show RUN`); the console gets one line each instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


def _run_or_explain(cfg, run_name: str | None, resume: str | None = None):  # type: ignore[no-untyped-def]
    """Run (or resume) the pipeline; a failed step becomes one clear line (its log has the details)."""
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
            return resume_training_pipeline(resume, cfg)
        return run_training_pipeline(cfg, run_name)
    except RunRefused as exc:
        raise click.ClickException(str(exc)) from exc
    except RunFailed as exc:
        raise click.ClickException(
            f"{exc}. Nothing was registered; `trs-pose run --resume {exc.run_name}` continues the run once the "
            f"cause is fixed (`trs-pose runs show {exc.run_name}` prints the traceback)."
        ) from exc
    except RuntimeError as exc:
        raise click.ClickException(f"{exc}. Nothing was registered; the failing step's log is above.") from exc


@click.command()
@config_options
@click.option("--run-name", default=None, help="ZenML run name (default: <config name>-<date>-<time>).")
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
    "checkpoint. With --config/--set the config must equal the run's.",
)
def run(
    config_path: str | None,
    overrides: tuple[str, ...],
    run_name: str | None,
    no_local_services: bool,
    resume: str | None,
) -> None:
    """Run the training pipeline: ingest -> validate -> split -> train -> evaluate -> register -> promote.

    MLflow, S3 and ZenML default to the servers of `trs-pose services up`; set registry.tracking_uri,
    storage.endpoint_url (and the AWS_* variables), ZENML_STORE_URL and ZENML_STORE_API_KEY to use
    others. With --no-local-services the ZenML variables are required.
    """
    from components.services.reachability import require_pipeline_services
    from pipelines.runner import use_local_services
    from pipelines.zenml_stack import zenml_endpoint

    if resume is not None and run_name is not None:
        raise click.UsageError("--resume continues an existing run under its own name; drop --run-name")
    given = resume is None or config_path is not None or bool(overrides)
    cfg = resolve_config(config_path, overrides)
    if given:  # before any server: a wrong data location is one line, and nothing is written
        from components.data.prepare import check_before_run

        check_before_run(cfg.data)
    if not no_local_services:
        cfg = use_local_services(cfg)
    if given:  # a resume without a config checks the run's own endpoints as it reads them
        require_pipeline_services(cfg.registry.tracking_uri, cfg.storage.endpoint_url)
    zenml_endpoint(allow_local=not no_local_services)  # a run that would leave no record never starts
    if given:
        click.echo(cfg.to_yaml())
    started = time.monotonic()
    summary = _run_or_explain(cfg if given else None, run_name, resume)
    _print_summary(summary, cfg, time.monotonic() - started)


@click.command()
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a demo config field.")
def demo(overrides: tuple[str, ...]) -> None:
    """The README's demo: start the services, make synthetic people, run the pipeline on a CPU budget."""
    from components.services.manager import services_up
    from pipelines.runner import use_local_services

    started = time.monotonic()
    cfg = resolve_config(str(DEMO_CONFIG), overrides)  # a bad --set fails before any server starts
    endpoints = services_up()
    click.echo(f"services: {endpoints}")
    cfg = use_local_services(cfg)
    summary = _run_or_explain(cfg, None)
    _print_summary(summary, cfg, time.monotonic() - started)
    click.echo("Stop the servers with `trs-pose services down` (or `make services-down`).")
