"""`trs-pose train`: train a pose model (supervised, mean_teacher, trs or dual) outside the pipeline.

Runs as one process, or under `torchrun --nproc_per_node N -m cli.main train ...` for data
parallelism; only rank 0 prints. Training resumes from the latest checkpoint in
train.checkpoint.dir unless `--set train.checkpoint.resume=false`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NoReturn

import click

from cli.errors import UserError
from cli.options import config_options, resolve_config


class JsonLinesLogger:
    """Metrics as one JSON object per line, appended (a resumed run continues the same file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")


def split_from_dir(split_dir: str | Path) -> Any:
    """The SplitFiles a `trs-pose data split --out DIR` run wrote."""
    from components.data.split import SplitError, read_split

    try:
        return read_split(split_dir)
    except SplitError as exc:
        raise click.UsageError(str(exc)) from exc


def split_from_annotations(
    ann: str, images: str, val_ann: str | None, val_images: str | None, out_dir: str, cfg: Any
) -> Any:
    from components.data.split import SplitError, make_split

    try:
        return make_split(ann, images, val_ann or ann, val_images or images, out_dir, cfg.data)
    except SplitError as exc:
        raise click.ClickException(str(exc)) from exc


def split_from_data_root(cfg: Any, out_dir: str) -> Any:
    """The configured data (data.root in COCO layout or explicit locations, synthesised when configured,
    with any raw unlabeled images) split here. The config alone says where the data is.
    """
    from components.data.ingest import IngestError
    from components.data.prepare import pool_input, prepare_dataset
    from components.data.sources import DataSourceError
    from components.data.split import SplitError, make_split

    try:
        data = prepare_dataset(cfg.data, cfg.storage.endpoint_url)
        pool = pool_input(data, cfg.data, Path(out_dir) / "unlabeled")
        return make_split(data.train_ann, data.train_images, data.val_ann, data.val_images, out_dir, cfg.data, pool)
    except DataSourceError as exc:  # a config error: retrying cannot make the path appear
        raise UserError(
            f"{exc} (a training pod sees only s3:// locations and its image's files)",
            cfg.backend.kubernetes.config_error_exit_code,
        ) from exc
    except (IngestError, SplitError) as exc:
        raise click.ClickException(str(exc)) from exc


def reject_split(message: str, exit_code: int) -> NoReturn:
    """A split the pod must not train on is a config error: one line, and the configured exit code so
    the Job fails at once instead of retrying."""
    from cli.errors import UserError

    raise UserError(message, exit_code)


def split_from_published(cfg: Any, ctx: Any, published: Any, out_dir: str) -> Any:
    """The pipeline's split, downloaded from S3 by the first process of each node and checked file by
    file against the hashes the pipeline recorded; the node's other processes wait and read it."""
    from components.data.published_split import SplitIntegrityError, fetch_split, split_files_in
    from components.engine.distributed import barrier
    from components.storage.s3 import s3_client

    if ctx.local_rank == 0:
        try:
            fetch_split(published, out_dir, s3_client(cfg.storage.endpoint_url, cfg.storage.region))
        except SplitIntegrityError as exc:
            reject_split(str(exc), cfg.backend.kubernetes.config_error_exit_code)
    barrier(ctx)
    return split_files_in(published, out_dir)


def split_for_this_node(
    cfg: Any,
    ctx: Any,
    split_dir: str | None,
    ann: str | None,
    images: str | None,
    val_ann: str | None,
    val_images: str | None,
    split_out: str,
) -> Any:
    """The split to train on. In a pod, only the split the pipeline published (TRS_POSE_SPLIT): a pod
    never ingests or splits by itself. Elsewhere, under torchrun, the first process of each node
    prepares the data and writes the split (deterministic, so every node writes the same), and the
    others read it back."""
    from components.data.published_split import SPLIT_ENV, SplitIntegrityError, published_split_from_env
    from components.engine.distributed import barrier
    from components.kubernetes.manifests import RUN_URI_ENV

    code = cfg.backend.kubernetes.config_error_exit_code
    try:
        published = published_split_from_env()
    except SplitIntegrityError as exc:
        reject_split(str(exc), code)
    if published is not None:
        return split_from_published(cfg, ctx, published, split_out)
    if os.environ.get(RUN_URI_ENV) and not (split_dir or ann):
        reject_split(f"{SPLIT_ENV} is not set: a training pod trains only on the split the pipeline published", code)
    if split_dir:
        return split_from_dir(split_dir)
    split = None
    if ctx.local_rank == 0:
        if ann:
            if images is None:
                raise click.UsageError("--ann needs --images, the image directory it describes")
            split = split_from_annotations(ann, images, val_ann, val_images, split_out, cfg)
        else:
            split = split_from_data_root(cfg, split_out)
    barrier(ctx)
    return split if split is not None else split_from_dir(split_out)


def initial_weights(cfg: Any) -> tuple[Any, Any]:
    """The config with train.init pinned, and the weights it names (None from scratch). A pod gets the
    pinned models:/NAME/VERSION from the pipeline and reads it from MLflow (MLFLOW_TRACKING_URI)."""
    import tempfile

    from components.serving.model_source import load_initial_weights, pin_init

    if not cfg.train.warm:
        return cfg, None
    tracking_uri = cfg.registry.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    pinned = pin_init(cfg.train.init, cfg.registry.model_name, tracking_uri)
    train = cfg.train.model_copy(update={"init": pinned or "scratch"})
    cfg = cfg.model_copy(update={"train": train})
    if pinned is None:
        return cfg, None
    with tempfile.TemporaryDirectory() as scratch:
        return cfg, load_initial_weights(pinned, tracking_uri, scratch)


def last_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    """The latest value of every metric in the history (finite values only, for JSON)."""
    last: dict[str, float] = {}
    for record in history:
        last.update({k: v for k, v in record.items() if k != "step" and v == v and abs(v) != float("inf")})
    return last


def print_summary(result: Any, cfg: Any) -> None:
    from rich.table import Table

    from cli.tables import print_table

    table = Table(title=f"{cfg.name}: {cfg.train.method}, {result.step} iterations")
    table.add_column("metric")
    table.add_column("last value", justify="right")
    for name, value in last_metrics(result.history).items():
        table.add_row(name, f"{value:.4g}")
    print_table(table)
    click.echo(f"checkpoint: {result.checkpoint_uri}")


@click.command()
@config_options
@click.option(
    "--split-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="A split made by `trs-pose data split --out DIR`.",
)
@click.option(
    "--ann",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Training COCO keypoint file, split here by the config's data section.",
)
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None, help="Images of --ann.")
@click.option(
    "--val-ann",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Validation COCO file [default: --ann].",
)
@click.option(
    "--val-images",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Images of --val-ann [default: --images].",
)
@click.option(
    "--split-out",
    type=click.Path(file_okay=False),
    default="runs/split",
    show_default=True,
    help="Where --ann's split is written.",
)
@click.option(
    "--checkpoint-dir", default=None, help="Local dir or s3:// prefix (shorthand for --set train.checkpoint.dir=...)."
)
@click.option(
    "--metrics-file", type=click.Path(dir_okay=False), default=None, help="Append metrics as JSON lines here."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object instead of a table.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs, CI).")
def train(
    config_path: str | None,
    overrides: tuple[str, ...],
    split_dir: str | None,
    ann: str | None,
    images: str | None,
    val_ann: str | None,
    val_images: str | None,
    split_out: str,
    checkpoint_dir: str | None,
    metrics_file: str | None,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Train on a split (--split-dir), on a COCO file split here (--ann/--images), or on data.root.

    In a training pod (TRS_POSE_RUN_URI set) it trains only on the split the pipeline published
    (TRS_POSE_SPLIT: S3 URI and recorded sha256 of every file, checked before training), and rank 0
    also writes result.json for the launcher.

    \b
    Examples:
      trs-pose train --config configs/demo.yaml --split-dir runs/split
      trs-pose train --ann train.json --images train/ --set train.method=supervised --set train.iterations=500
      torchrun --nproc_per_node 2 -m cli.main train --config configs/coco_1k.yaml --split-dir runs/split
    """
    if split_dir and ann:
        raise click.UsageError("give --split-dir or --ann/--images, not both")
    if bool(ann) != bool(images):
        raise click.UsageError("--ann and --images go together")
    if checkpoint_dir:
        overrides = (*overrides, f"train.checkpoint.dir={checkpoint_dir}")
    cfg = resolve_config(config_path, overrides)

    from components.data.records import RecordError
    from components.engine.distributed import init_distributed, shutdown_distributed
    from components.engine.trainer import train as run_training

    ctx = init_distributed(cfg.train.device)  # no-op without torchrun
    try:
        split = split_for_this_node(cfg, ctx, split_dir, ann, images, val_ann, val_images, split_out)
        logger = JsonLinesLogger(metrics_file) if metrics_file and ctx.is_main else None
        cfg, init = initial_weights(cfg)
        result = run_training(cfg, split, logger, init=init, progress=not no_progress)
    except (RecordError, FloatingPointError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        shutdown_distributed()
    if not ctx.is_main:
        return
    from components.kubernetes.run_result import publish_if_in_pod
    from components.storage.s3 import patient_s3_client

    metrics = last_metrics(result.history)
    storage = cfg.storage
    result_store = patient_s3_client(storage.endpoint_url, storage.region, storage.retry_deadline_s)
    publish_if_in_pod(result.checkpoint_uri, result.step, metrics, result_store)
    if as_json:
        click.echo(json.dumps({"checkpoint": result.checkpoint_uri, "step": result.step, "metrics": metrics}))
    else:
        print_summary(result, cfg)
