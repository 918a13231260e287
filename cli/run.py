"""`trs-pose run` (the pipeline) and `trs-pose demo` (services, synthetic data, pipeline, summary)."""

from __future__ import annotations

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
    table.add_row("ZenML", "zenml pipeline runs list  (ZENML_CONFIG_PATH=.state/zenml)")
    console.print(table)


def _run_or_explain(cfg, run_name: str | None):  # type: ignore[no-untyped-def]
    """Run the pipeline; a failed step becomes one clear line (its log above has the details)."""
    from pipelines.runner import run_training_pipeline

    try:
        return run_training_pipeline(cfg, run_name)
    except RuntimeError as exc:
        raise click.ClickException(f"{exc}. Nothing was registered; the failing step's log is above.") from exc


@click.command()
@config_options
@click.option("--run-name", default=None, help="ZenML run name (default: <config name>-<date>-<time>).")
@click.option("--no-local-services", is_flag=True, help="Do not default MLflow/S3 to `trs-pose services up`.")
def run(config_path: str | None, overrides: tuple[str, ...], run_name: str | None, no_local_services: bool) -> None:
    """Run the training pipeline: ingest -> validate -> split -> train -> evaluate -> register -> promote.

    MLflow and S3 default to the servers of `trs-pose services up`; set registry.tracking_uri,
    storage.endpoint_url (and the AWS_* variables) to use others.
    """
    from pipelines.runner import use_local_services

    cfg = resolve_config(config_path, overrides)
    if not no_local_services:
        cfg = use_local_services(cfg)
    click.echo(cfg.to_yaml())
    started = time.monotonic()
    summary = _run_or_explain(cfg, run_name)
    _print_summary(summary, cfg, time.monotonic() - started)


@click.command()
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a demo config field.")
def demo(overrides: tuple[str, ...]) -> None:
    """The README's demo: start the services, make synthetic people, run the pipeline on a CPU budget."""
    from components.services.manager import services_up
    from pipelines.runner import use_local_services

    started = time.monotonic()
    endpoints = services_up()
    click.echo(f"services: {endpoints}")
    cfg = use_local_services(resolve_config(str(DEMO_CONFIG), overrides))
    summary = _run_or_explain(cfg, None)
    _print_summary(summary, cfg, time.monotonic() - started)
    click.echo("Stop the servers with `trs-pose services down` (or `make services-down`).")
