"""`trs-pose evaluate`: COCO keypoint AP of a results file, or of a checkpoint run on a dataset."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click

from cli.errors import CONFIG_ERROR_EXIT, UserError
from cli.model_options import model_source_options, open_model
from cli.options import resolve_config

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
    from components.config import ConfigError, with_overrides

    try:
        return with_overrides(cfg.model_dump(mode="json"), list(overrides), "the checkpoint's config")
    except ConfigError as exc:
        raise UserError(str(exc), CONFIG_ERROR_EXIT) from exc


def print_metrics(metrics: dict[str, float], title: str) -> None:
    from rich.table import Table

    from cli.tables import print_table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    print_table(table)


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
@model_source_options
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False),
    help="Image directory of --ann (with --checkpoint or --model).",
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
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="With --results: the experiment YAML whose keypoints section (sigmas, flip pairs) scores them.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override the checkpoint's config, e.g. --set eval.batch_size=16; with --results, keypoints.* only, "
    "e.g. --set keypoints.sigmas=[0.05,0.05,...].",
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
@click.option(
    "--plots",
    type=click.Path(file_okay=False),
    help="With --checkpoint: draw its training curves, metrics, per-joint accuracy and errors, and its "
    "worst and best people into this folder.",
)
@click.option("--progress/--no-progress", default=True, help="Progress bar during inference.")
def evaluate(
    ann: str,
    results: str | None,
    checkpoint: str | None,
    model_uri: str | None,
    runtime: str,
    tracking_uri: str | None,
    images: str | None,
    detections: str | None,
    flip_test: bool | None,
    decoder: str | None,
    out: str | None,
    device: str,
    config_path: str | None,
    overrides: tuple[str, ...],
    as_json: bool,
    breakdown: bool,
    plots: str | None,
    progress: bool,
) -> None:
    """Keypoint AP (OKS with the keypoint set's sigmas) of a results file, or of a model on a dataset.

    The keypoint set of a results file is --ann's keypoint category; its sigmas are COCO's for COCO's
    17 person keypoints, else --config's or --set keypoints.sigmas=[...] (a default otherwise, with a
    warning: AP depends on them). A model scores only annotations of its own keypoint set.

    \b
    Score a results file:   trs-pose evaluate --ann val.json --results results.json --json
    Score a checkpoint:     trs-pose evaluate --checkpoint runs/checkpoints/ckpt-00001000.pt \\
                                --ann val.json --images val/ [--detections det.json] [--flip-test]
    Score a registered one: trs-pose evaluate --model models:/trs-pose@champion [--runtime onnx] \\
                                --ann val.json --images val/
    """
    from components.data.records import RecordError
    from components.evaluation.coco_eval import (
        AnnotationsError,
        ResultsError,
        checked_results,
        coco_keypoint_eval,
        ground_truth_keypoints,
        load_ground_truth,
    )
    from components.evaluation.error_breakdown import error_breakdown

    model_given = checkpoint is not None or model_uri is not None
    if (results is None) == (not model_given) or (checkpoint is not None and model_uri is not None):
        raise click.UsageError("give exactly one of --results (score a file), --checkpoint or --model (run a model)")
    if results is not None and (images or detections or out or flip_test is not None or decoder):
        raise click.UsageError("--images, --detections, --flip-test, --decoder and --out need --checkpoint or --model")
    if results is not None and any(not o.strip().startswith("keypoints.") for o in overrides):
        raise click.UsageError("with --results, --set takes keypoints.* fields only (the rest needs a model)")
    if config_path is not None and results is None:
        raise click.UsageError("--config scores --results; a model brings its own config (override it with --set)")
    if plots is not None and checkpoint is None:
        raise click.UsageError("--plots needs --checkpoint (its history and predictions)")
    if model_given and images is None:
        raise click.UsageError("--checkpoint needs --images, the image directory of --ann (and so does --model)")
    try:
        gt = load_ground_truth(ann)  # parsed once for the metrics and the breakdown
        if results is not None:
            options = resolve_config(config_path, overrides).keypoints
            keypoints = ground_truth_keypoints(gt, options)
            records = checked_results(results, gt, keypoints.num_keypoints)  # read and checked once
            if not records:
                raise UserError(f"{results}: the results list is empty, nothing to score (AP would be 0 by definition)")
            metrics = coco_keypoint_eval(gt, records, keypoints=keypoints)
            errors = error_breakdown(gt, records, keypoints) if breakdown else None
            title = f"COCO keypoint metrics of {results}"
        else:
            assert images is not None  # a usage error above otherwise
            with tempfile.TemporaryDirectory() as scratch:
                predictions = out or (str(Path(scratch) / "results.json") if breakdown or plots else None)
                metrics, keypoint_set = _evaluate_checkpoint(
                    checkpoint,
                    model_uri,
                    runtime,
                    tracking_uri,
                    ann,
                    gt,
                    images,
                    detections,
                    flip_test,
                    decoder,
                    predictions,
                    device,
                    overrides,
                    progress=progress and not as_json,
                )
                errors = error_breakdown(gt, predictions, keypoint_set) if breakdown and predictions else None
                if plots is not None and predictions is not None and checkpoint is not None:
                    from components.reporting.run_report import draw_checkpoint_figures

                    for figure in draw_checkpoint_figures(checkpoint, metrics, predictions, gt, images, plots):
                        click.echo(f"figure: {figure}", err=True)
            title = f"COCO keypoint metrics of {checkpoint or model_uri}"
    except (ResultsError, AnnotationsError, RecordError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({**metrics, "breakdown": errors} if errors is not None else metrics))
        return
    print_metrics(metrics, title)
    if errors is not None:
        print_metrics(errors, "keypoint errors (share of matched labeled keypoints)")


def _evaluate_checkpoint(
    checkpoint: str | None,
    model_uri: str | None,
    runtime: str,
    tracking_uri: str | None,
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
) -> tuple[dict[str, float], Any]:
    """The model's metrics on --ann, and its keypoint set (the annotations must be of it)."""
    from components.data.validation import missing_images
    from components.evaluation.coco_eval import check_keypoint_set
    from components.evaluation.evaluate import evaluate_model
    from components.serving.model_source import onnx_runtime

    listed = [Path(image["file_name"]) for image in gt.imgs.values()]
    missing = missing_images(images, listed)
    if missing:
        raise UserError(
            f"--images {images}: {len(missing)} of the {len(listed)} images {ann} lists are not there "
            f"(first: {missing[0]}); give the folder that holds them"
        )
    with open_model(checkpoint, model_uri, tracking_uri) as opened, tempfile.TemporaryDirectory() as scratch:
        cfg = override_config(opened.cfg, overrides)
        keypoint_set = cfg.keypoints.keypoint_set()
        check_keypoint_set(gt, keypoint_set)  # one line naming both sets, before any inference
        if decoder is not None:
            cfg.eval.decoder = decoder
        onnx = None
        if runtime == "onnx":  # the exported whole predictor decodes with argmax, in its graph
            if cfg.eval.decoder != "argmax":
                raise click.UsageError("--runtime onnx decodes with argmax (in the graph); drop --decoder dark")
            flip = cfg.eval.flip_test if flip_test is None else flip_test
            onnx = onnx_runtime(opened.network, cfg, flip, opened.onnx_path, scratch)
        metrics = evaluate_model(
            None if onnx is not None else opened.network,
            ann,
            images,
            cfg,
            detections=detections,
            flip_test=flip_test,
            ground_truth=gt,
            results_out=out,
            device=resolve_device(device),  # evaluation moves the model there
            progress=progress,
            runtime=onnx,
        )
        return metrics, keypoint_set
