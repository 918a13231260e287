"""`trs-pose suggest`: which unlabeled images to label next, as a task for Label Studio or CVAT."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from cli.evaluate import override_config
from cli.model_options import open_model


def _models_of(checkpoint: str | None, opened: Any) -> Any:
    """A checkpoint's student, teacher and reviewer; a registered version's student alone."""
    from components.engine.checkpoint import latest_checkpoint, load_checkpoint
    from components.labeling.uncertainty import ScoringModels, scoring_models
    from components.storage.s3 import is_s3_uri

    if checkpoint is None:
        return ScoringModels(opened.network)
    uri = checkpoint
    if Path(checkpoint).is_dir() or (is_s3_uri(checkpoint) and not checkpoint.endswith(".pt")):
        uri = latest_checkpoint(checkpoint) or checkpoint
    return scoring_models(load_checkpoint(uri), opened.cfg)


def _split(cfg: Any, split_dir: str | None, scratch: Path) -> Any:
    from components.data.prepare import pool_input, prepare_dataset
    from components.data.split import make_split, read_split

    if split_dir is not None:
        return read_split(split_dir)
    data = prepare_dataset(cfg.data, cfg.storage.endpoint_url, synthesise=False)
    pool = pool_input(data, cfg.data, scratch / "unlabeled")
    return make_split(
        data.train_ann, data.train_images, data.val_ann, data.val_images, scratch / "split", cfg.data, pool
    )


@click.command()
@click.option("--checkpoint", default=None, help="A training checkpoint (file, folder or s3:// prefix: its latest).")
@click.option("--model", "model_uri", default=None, metavar="URI", help="A registered version: models:/NAME@ALIAS.")
@click.option("--tracking-uri", default=None, help="MLflow server holding the registry (with --model).")
@click.option("--budget", type=click.IntRange(min=1), required=True, help="Images to suggest (not people).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="The task folder to write.")
@click.option(
    "--split-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="A split made by `trs-pose data split` (default: the model's own data, split as its run did).",
)
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Score a random sample of this many.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override the model's config, e.g. --set 'data.unlabeled.images=[new-raw/]' to score other images.",
)
def suggest(
    checkpoint: str | None,
    model_uri: str | None,
    tracking_uri: str | None,
    budget: int,
    out_dir: str,
    split_dir: str | None,
    max_images: int | None,
    overrides: tuple[str, ...],
) -> None:
    """Score every unlabeled person by how unsure the method is and write a labeling task for the top
    BUDGET images: images/, images.txt (where you have them), pre_annotations.json (COCO keypoints with
    the model's poses, importable by Label Studio and CVAT) and scores.csv.

    A checkpoint's teacher and reviewer are scored by their disagreement; a registered version (the
    student alone) by its flip inconsistency and keypoint confidence. Near-duplicate images (N frames
    of one scene) are one suggestion. Merge the labels back with `trs-pose data add-labels`.

    \b
    trs-pose suggest --checkpoint runs/demo/checkpoints/RUN --budget 20 --out label-next/
    trs-pose suggest --model models:/own-data@champion --budget 50 --out label-next/
    """
    from components.labeling.suggest import suggest_labels

    if (checkpoint is None) == (model_uri is None):
        raise click.UsageError("give exactly one of --checkpoint or --model")
    with open_model(checkpoint, model_uri, tracking_uri) as opened, tempfile.TemporaryDirectory() as scratch:
        cfg = override_config(opened.cfg, overrides)
        models = _models_of(checkpoint, opened)
        split = _split(cfg, split_dir, Path(scratch))
        found = suggest_labels(
            models, cfg, split, budget, out_dir, model_label=opened.label, max_images=max_images, seed=cfg.train.seed
        )
    click.echo(
        f"scored {found.people_scored} unlabeled people in {found.images_scored} images ({found.method}); "
        f"suggested {len(found.picked)} images"
    )
    for rank, picked in enumerate(found.picked[:10], start=1):
        extra = f" (+{len(picked.stands_for)} near-duplicates)" if picked.stands_for else ""
        click.echo(f"{rank:>3}. {picked.score:.3f}  {picked.origin}{extra}")
    task = found.task
    click.echo(f"task: {task.folder} (pre_annotations.json, images.txt, scores.csv, images/)")
