"""`trs-pose` entry point. Subcommands load lazily so `--help` answers without importing torch."""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

# name -> (module, attribute, one-line help shown by `trs-pose --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "cli.run",
        "run",
        "Run the ZenML training pipeline: ingest, validate, split, train, evaluate, register, promote.",
    ),
    "demo": ("cli.run", "demo", "Start the services, make synthetic data and run the pipeline on a CPU budget."),
    "train": ("cli.train", "train", "Train a pose model (supervised, mean_teacher, trs or dual) outside the pipeline."),
    "evaluate": ("cli.evaluate", "evaluate", "COCO keypoint AP of a results file, or of a checkpoint on a dataset."),
    "predict": ("cli.predict", "predict", "Keypoints for the people in one image, as JSON and a drawn image."),
    "export": ("cli.export", "export", "The whole predictor (image + boxes in, keypoints out) as one ONNX file."),
    "suggest": ("cli.suggest", "suggest", "The unlabeled images to label next, as a task for Label Studio or CVAT."),
    "data": ("cli.data", "data", "Make, ingest, validate and split COCO-format keypoint data."),
    "runs": ("cli.runs", "runs", "Pipeline runs with their state (list) and one run's steps and traceback (show)."),
    "models": ("cli.models", "models", "List, promote and roll back registered model versions."),
    "services": (
        "cli.services",
        "services",
        "Start, stop and inspect the local S3 (SeaweedFS), MLflow and ZenML servers.",
    ),
    "k8s": ("cli.k8s", "k8s", "Render the Kubernetes manifests for training."),
    "schedule": ("cli.k8s", "schedule", "Render (and optionally apply) the scheduled-retraining CronJob."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attribute, _ = COMMANDS[name]
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; our exceptions become one line on stderr (cli/errors.py), or a traceback with --debug."""
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # one line, not click's usage block
            from cli.errors import UserError

            path = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            raise UserError(f"{exc.format_message()} (see `{path} --help`)", exc.exit_code) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            from cli.errors import user_error

            raise user_error(exc) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="trs-pose")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error (else it goes to .state/debug.log).")
def cli(debug: bool) -> None:
    """trs-pose: semi-supervised 2D human pose estimation (Teacher-Reviewer-Student), from labeled and
    unlabeled COCO-format images to a registered, promoted model.

    Typical use: `trs-pose services up`, then `trs-pose run --config configs/demo.yaml`.
    """


def main() -> None:
    for variable, value in (
        ("ZENML_ANALYTICS_OPT_IN", "false"),
        ("GX_ANALYTICS_ENABLED", "false"),
        ("MLFLOW_ENABLE_TELEMETRY", "false"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),  # seconds a request may wait for a byte (MLflow's default: 120)
        ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),  # else a progress line per downloaded file
        ("MLFLOW_LOGGING_LEVEL", "WARNING"),  # a run prints a line a step; MLflow's chatter is not one
        ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"),  # the run's summary names the MLflow UI
    ):
        os.environ.setdefault(variable, value)
    cli()


if __name__ == "__main__":
    main()
