"""`trs-pose data ...`: synthetic data, ingestion, validation and splits."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.options import config_options, resolve_config
from cli.servers import server_options


@click.group()
def data() -> None:
    """Make, ingest, validate and split COCO-format keypoint data."""


@data.command()
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Dataset root to write (COCO layout)."
)
@click.option("--num-images", type=click.IntRange(min=1), required=True, help="Training images.")
@click.option(
    "--val-images",
    type=click.IntRange(min=0),
    default=None,
    help="Validation images [default: a tenth of --num-images, at least 1].",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--height", type=click.IntRange(min=32), default=256, show_default=True, help="Image height in pixels.")
@click.option("--width", type=click.IntRange(min=32), default=320, show_default=True, help="Image width in pixels.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes [default: CPU count, at most 8].")
@click.option(
    "--style",
    type=click.Choice(["standard", "easy"]),
    default="standard",
    show_default=True,
    help="standard: crowded, cluttered, any facing; easy: one or two large people, plain backgrounds.",
)
def synth(
    out_dir: str,
    num_images: int,
    val_images: int | None,
    seed: int,
    height: int,
    width: int,
    workers: int | None,
    style: str,
) -> None:
    """Draw synthetic people into OUT/annotations/person_keypoints_{train,val}.json and OUT/{train,val}/*.jpg."""
    from tqdm import tqdm

    from components.data.synthetic import generate_dataset

    val_images = max(1, num_images // 10) if val_images is None else val_images
    with tqdm(total=num_images + val_images, unit="img", desc="synth") as bar:
        summary = generate_dataset(
            out_dir,
            num_images,
            val_images,
            seed=seed,
            image_size=(height, width),
            workers=workers,
            progress=lambda split, n: bar.update(n),
            style=style,
        )
    for split, path in summary.annotation_files.items():
        click.echo(f"{split:>5}: {summary.images[split]:>7} images {summary.people[split]:>8} people  {path}")


@data.command()
@click.argument("source")
@click.option(
    "--cache",
    "cache_dir",
    default=".cache/datasets",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Content-addressed cache directory.",
)
@server_options(s3=True)
@click.option(
    "--hardlink",
    is_flag=True,
    help="Link local files into the cache instead of copying (saves space; in-place edits leak in).",
)
def ingest(source: str, cache_dir: str, endpoint_url: str | None, hardlink: bool) -> None:
    """Copy SOURCE (a directory or s3://bucket/prefix in COCO layout) into the cache; print its local root.

    A second run with unchanged content downloads nothing.
    """
    from components.data.ingest import IngestError, read_ingest_record
    from components.data.ingest import ingest as ingest_source
    from components.services.resolution import resolve_servers
    from components.storage.s3 import is_s3_uri

    if is_s3_uri(source):
        servers = resolve_servers(endpoint_url=endpoint_url)
        servers.probe(s3=True)
        servers.require_s3_key(f"ingesting {source}")
        servers.export()
        endpoint_url = servers.s3.value if servers.s3 else None
    try:
        root = ingest_source(source, cache_dir, endpoint_url=endpoint_url, hardlink=hardlink)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    record = read_ingest_record(root)
    click.echo(
        f"{root}  ({record['files']} files, {record['bytes'] / 1e6:.1f} MB, fingerprint {record['fingerprint'][:12]})"
    )


@data.command()
@click.option("--ann", required=True, type=click.Path(dir_okay=False), help="COCO person-keypoint annotation file.")
@click.option(
    "--images",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory holding the images the file lists (not needed with --no-images).",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write report.json and the Great Expectations result here.",
)
@click.option("--no-images", is_flag=True, help="Skip opening the images (structure of the JSON only).")
@click.option("--no-expectations", is_flag=True, help="Skip the statistical (Great Expectations) layer.")
@config_options
def validate(
    ann: str,
    images: str | None,
    report_dir: str | None,
    no_images: bool,
    no_expectations: bool,
    config_path: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Check a COCO keypoint set; print every violation (file, record, rule). Exit 0 if valid, 1 if not.

    Any keypoint set is valid (one category lists its keypoints); the config's keypoints section
    (--config, --set keypoints.flip_pairs=..., keypoints.sigmas=...) must fit it.
    """
    if images is None and not no_images:
        raise click.UsageError("--images DIR is needed to check the images (or --no-images to skip them)")
    from components.data.validation import validate_dataset

    keypoints = resolve_config(config_path, overrides).keypoints
    report = validate_dataset(
        ann,
        images or ".",
        report_dir,
        check_images=not no_images,
        expectations=not no_expectations,
        keypoints=keypoints,
    )
    for violation in report.violations:
        click.echo(str(violation))
    if report.stats:
        stats = report.stats
        click.echo(
            f"{stats['images']} images, {stats['annotations']} annotations "
            f"({stats['people_with_keypoints']} people with keypoints, {stats['crowd_annotations']} crowd)"
        )
    if report.keypoints is not None:
        sigmas = {"coco": "COCO's", "config": "the config's", "default": "defaults (AP depends on them)"}
        click.echo(
            f"keypoint set {report.keypoints.category!r}: {report.keypoints.summary()}; "
            f"{len(report.keypoints.flip_pairs)} flip pairs; sigmas {sigmas[report.keypoints.sigma_source]}"
        )
    if report.report_path is not None:
        click.echo(f"report: {report.report_path}")
    if report.ok:
        click.echo(f"VALID: {ann}")
        return
    counts: dict[str, int] = {}
    for violation in report.violations:
        counts[violation.rule] = counts.get(violation.rule, 0) + 1
    click.echo(
        f"INVALID: {ann}: {len(report.violations)} violation(s): "
        + ", ".join(f"{r} x{n}" for r, n in sorted(counts.items())),
        err=True,
    )
    raise SystemExit(1)


@data.command()
@click.option("--root", default=None, help="Dataset root in COCO layout (default: data.root of the config).")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Where labeled/holdout/unlabeled JSON and manifest.json go.",
)
@config_options
def split(root: str | None, out_dir: str, config_path: str | None, overrides: tuple[str, ...]) -> None:
    """Split the training set into labeled, held-out and unlabeled files by data.split_seed.

    Sizes come from data.num_labeled (or data.labeled_fraction) and data.holdout_labeled, e.g.
    --set data.num_labeled=1000 for the 1K protocol.
    """
    from components.data.prepare import pool_input, prepare_dataset
    from components.data.split import SplitError, make_split

    cfg = resolve_config(config_path, overrides)
    data_cfg = cfg.data if root is None else cfg.data.model_copy(update={"root": root})
    data = prepare_dataset(data_cfg, cfg.storage.endpoint_url, synthesise=False)  # splits data that is there
    pool = pool_input(data, data_cfg, Path(out_dir) / "unlabeled")
    try:
        files = make_split(data.train_ann, data.train_images, data.val_ann, data.val_images, out_dir, data_cfg, pool)
    except SplitError as exc:
        raise click.ClickException(str(exc)) from exc
    manifest = json.loads(files.manifest.read_text())
    for name, count in manifest["counts"].items():
        click.echo(f"{name:>9}: {count['images']:>7} images {count['annotations']:>8} annotations")
    click.echo(f"manifest: {files.manifest}")


@data.command("add-labels")
@click.option("--ann", "returned", required=True, type=click.Path(dir_okay=False), help="The labels that came back.")
@click.option("--to", "labeled", required=True, type=click.Path(dir_okay=False), help="The labeled COCO file.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The merged file to write (a new one).")
@click.option("--renumber", is_flag=True, help="Give the returned images and people new ids above the labeled file's.")
@click.option(
    "--images",
    type=click.Path(file_okay=False),
    default=None,
    help="The labeled images folder: say which new images still have to be copied there.",
)
@config_options
def add_labels(
    returned: str,
    labeled: str,
    out: str,
    renumber: bool,
    images: str | None,
    config_path: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Merge labels from Label Studio or CVAT (COCO keypoints) into a labeled file, as a new file.

    The returned file is validated like any annotation file and must use the labeled file's keypoint
    set; an image labeled in both, or an id both use for different records, is refused with one line
    naming both (--renumber avoids id clashes). Neither input is edited; point data.train_ann at --out
    and the next run sees new inputs and trains.
    """
    from components.labeling.label_merge import merge_labels

    keypoints = resolve_config(config_path, overrides).keypoints
    summary = merge_labels(returned, labeled, out, renumber=renumber, keypoints=keypoints)
    click.echo(
        f"{summary.out}: +{summary.images_added} images, +{summary.annotations_added} people "
        f"({summary.labeled_people} with keypoints)"
    )
    if images is not None:
        merged = json.loads(Path(summary.out).read_text())["images"]
        missing = [image["file_name"] for image in merged if not (Path(images) / image["file_name"]).is_file()]
        if missing:
            click.echo(
                f"{len(missing)} images are not in {images} yet (first: {missing[0]}): copy them there from the task's images/"
            )
