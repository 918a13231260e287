"""`trs-pose evaluate`: COCO keypoint AP of a results file, or of a checkpoint run on a dataset."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click

METRIC_HELP = "AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl"


def resolve_device(name: str) -> str:
    """`auto` picks the GPU when there is one."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_checkpoint_model(location: str) -> tuple[Any, Any]:
    """(student, config) of a checkpoint file, or of the latest checkpoint in a directory or S3 prefix."""
    from components.engine.checkpoint import latest_checkpoint, load_student
    from components.storage.s3 import is_s3_uri

    uri = location
    if (is_s3_uri(location) and not location.endswith(".pt")) or Path(location).is_dir():
        uri = latest_checkpoint(location) or ""
        if not uri:
            raise click.ClickException(f"{location}: no checkpoint in this location")
    try:
        return load_student(uri)
    except FileNotFoundError as exc:
        raise click.ClickException(f"{uri}: checkpoint not found") from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def override_config(cfg: Any, overrides: tuple[str, ...]) -> Any:
    """A checkpoint's config with `--set` overrides applied and validated again."""
    if not overrides:
        return cfg
    from components.config import ConfigError, ExperimentConfig, apply_overrides

    try:
        return ExperimentConfig.model_validate(apply_overrides(cfg.model_dump(mode="json"), list(overrides)))
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(f"--set: {exc}") from exc


def print_metrics(metrics: dict[str, float], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


@click.command()
@click.option(
    "--ann",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="COCO keypoint annotations (ground truth).",
)
@click.option(
    "--results",
    type=click.Path(exists=True, dir_okay=False),
    help="COCO keypoint results JSON to score.",
)
@click.option(
    "--checkpoint",
    help="Checkpoint file, or a checkpoint directory / s3:// prefix (its latest), to run on --images.",
)
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False),
    help="Image directory of --ann (with --checkpoint).",
)
@click.option(
    "--detections",
    type=click.Path(exists=True, dir_okay=False),
    help="Person boxes from a COCO detection-results JSON (default: ground-truth boxes, the protocol).",
)
@click.option(
    "--flip-test/--no-flip-test",
    default=None,
    help="Average with the mirrored crop's heatmaps (default: the config's eval.flip_test).",
)
@click.option(
    "--decoder",
    type=click.Choice(["argmax", "dark"]),
    default=None,
    help="Heatmap decoder (default: the config's eval.decoder).",
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the predicted COCO results JSON here.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, ... or auto.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override the checkpoint's config, e.g. --set eval.batch_size=16.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help=f"Print one JSON object ({METRIC_HELP}) instead of a table.",
)
@click.option(
    "--breakdown",
    is_flag=True,
    help="Also bin every labeled keypoint as good, jitter, inversion, swap or miss (Ronchi & Perona 2017).",
)
@click.option("--progress/--no-progress", default=True, help="Progress bar during inference.")
def evaluate(
    ann: str,
    results: str | None,
    checkpoint: str | None,
    images: str | None,
    detections: str | None,
    flip_test: bool | None,
    decoder: str | None,
    out: str | None,
    device: str,
    overrides: tuple[str, ...],
    as_json: bool,
    breakdown: bool,
    progress: bool,
) -> None:
    """COCO keypoint AP (OKS, COCO's sigmas) of a results file, or of a checkpoint on a dataset.

    \b
    Score a results file:   trs-pose evaluate --ann val.json --results results.json --json
    Score a checkpoint:     trs-pose evaluate --checkpoint runs/checkpoints/ckpt-00001000.pt \\
                                --ann val.json --images val/ [--detections det.json] [--flip-test]
    """
    from components.data.records import RecordError
    from components.evaluation.coco_eval import AnnotationsError, ResultsError, coco_keypoint_eval, load_ground_truth
    from components.evaluation.error_breakdown import error_breakdown

    if (results is None) == (checkpoint is None):
        raise click.UsageError("give exactly one of --results (score a file) or --checkpoint (run a model)")
    if results is not None and (images or detections or out or flip_test is not None or decoder or overrides):
        raise click.UsageError("--images, --detections, --flip-test, --decoder, --out and --set need --checkpoint")
    if checkpoint is not None and images is None:
        raise click.UsageError("--checkpoint needs --images, the image directory of --ann")
    try:
        gt = load_ground_truth(ann)  # parsed once for the metrics and the breakdown
        if results is not None:
            metrics = coco_keypoint_eval(gt, results)
            errors = error_breakdown(gt, results) if breakdown else None
            title = f"COCO keypoint metrics of {results}"
        else:
            with tempfile.TemporaryDirectory() as scratch:
                predictions = out or (str(Path(scratch) / "results.json") if breakdown else None)
                metrics = _evaluate_checkpoint(
                    checkpoint, ann, gt, images, detections, flip_test, decoder, predictions, device, overrides,
                    progress=progress and not as_json,
                )
                errors = error_breakdown(gt, predictions) if breakdown and predictions else None
            title = f"COCO keypoint metrics of {checkpoint}"
    except (ResultsError, AnnotationsError, RecordError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({**metrics, "breakdown": errors} if errors is not None else metrics))
        return
    print_metrics(metrics, title)
    if errors is not None:
        print_metrics(errors, "keypoint errors (share of matched labeled keypoints)")


def _evaluate_checkpoint(
    checkpoint: str,
    ann: str,
    gt: Any,
    images: str,
    detections: str | None,
    flip_test: bool | None,
    decoder: str | None,
    out: str | None,
    device: str,
    overrides: tuple[str, ...],
    progress: bool,
) -> dict[str, float]:
    from components.evaluation.evaluate import evaluate_model

    model, cfg = load_checkpoint_model(checkpoint)
    cfg = override_config(cfg, overrides)
    if decoder is not None:
        cfg.eval.decoder = decoder
    return evaluate_model(
        model,
        ann,
        images,
        cfg,
        detections=detections,
        flip_test=flip_test,
        ground_truth=gt,
        results_out=out,
        device=resolve_device(device),  # evaluation moves the model there
        progress=progress,
    )
