"""`trs-pose predict`: keypoints for the people in one image, as JSON and as a drawn image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.evaluate import load_checkpoint_model, override_config, resolve_device


def parse_boxes(raw: Any, source: str) -> tuple[list[list[float]], list[float]]:
    """Boxes `[[x, y, w, h], ...]`, or detection records `[{"bbox": [...], "score": s}, ...]`, with their scores."""
    if not isinstance(raw, list):
        raise click.BadParameter(f"{source}: expected a JSON list of [x, y, w, h] boxes")
    boxes: list[list[float]] = []
    scores: list[float] = []
    for index, item in enumerate(raw):
        box, score = (item.get("bbox"), item.get("score", 1.0)) if isinstance(item, dict) else (item, 1.0)
        valid = (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
            and box[2] > 0
            and box[3] > 0
        )
        if not valid:
            raise click.BadParameter(f"{source}: box {index}: rule '[x, y, w, h] with positive w and h': got {box!r}")
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise click.BadParameter(f"{source}: box {index}: rule 'score is a number': got {score!r}")
        boxes.append([float(v) for v in box])
        scores.append(float(score))
    return boxes, scores


def read_rgb(path: str) -> Any:
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise click.BadParameter(f"{path}: not a readable image", param_hint="--image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@click.command()
@click.option(
    "--checkpoint",
    required=True,
    help="Checkpoint file, or a checkpoint directory / s3:// prefix (its latest).",
)
@click.option(
    "--image",
    "image_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The image.",
)
@click.option(
    "--boxes",
    help="Person boxes as JSON, '[[x,y,w,h],...]' (default: the whole image is one person).",
)
@click.option(
    "--boxes-file",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON file of boxes, or detection records with bbox and score.",
)
@click.option(
    "--out-json",
    type=click.Path(dir_okay=False),
    help="Write the keypoints here (default: print them).",
)
@click.option(
    "--out-image",
    type=click.Path(dir_okay=False),
    help="Write the image with the poses drawn here.",
)
@click.option(
    "--flip-test/--no-flip-test",
    default=None,
    help="Average with the mirrored crop (default: the config's eval.flip_test).",
)
@click.option(
    "--threshold",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Confidence below which a keypoint is not drawn.",
)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, ... or auto.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override the checkpoint's config, e.g. --set eval.decoder=dark.",
)
def predict(
    checkpoint: str,
    image_path: str,
    boxes: str | None,
    boxes_file: str | None,
    out_json: str | None,
    out_image: str | None,
    flip_test: bool | None,
    threshold: float,
    device: str,
    overrides: tuple[str, ...],
) -> None:
    """Keypoints of the people in one image (one box a person), as JSON and a drawn image.

    \b
    trs-pose predict --checkpoint ckpt.pt --image people.jpg --boxes '[[10,20,80,200]]' \\
        --out-json people.json --out-image people.png
    """
    if boxes is not None and boxes_file is not None:
        raise click.UsageError("give --boxes or --boxes-file, not both")
    image = read_rgb(image_path)
    if boxes is not None:
        try:
            box_list, box_scores = parse_boxes(json.loads(boxes), "--boxes")
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--boxes") from exc
    elif boxes_file is not None:
        try:
            box_list, box_scores = parse_boxes(json.loads(Path(boxes_file).read_text()), boxes_file)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{boxes_file}: not valid JSON: {exc}", param_hint="--boxes-file") from exc
    else:
        height, width = image.shape[:2]
        box_list, box_scores = [[0.0, 0.0, float(width), float(height)]], [1.0]

    from components.evaluation.drawing import draw_poses
    from components.evaluation.inference import predict_boxes
    from components.keypoints import KEYPOINT_NAMES

    model, cfg = load_checkpoint_model(checkpoint)
    cfg = override_config(cfg, overrides)
    model.to(resolve_device(device))
    keypoints, scores = predict_boxes(model, image, box_list, cfg, box_scores=box_scores, flip_test=flip_test)
    document = {
        "image": image_path,
        "keypoint_names": list(KEYPOINT_NAMES),
        "people": [
            {"bbox": box, "score": round(float(score), 4), "keypoints": person.round(2).tolist()}
            for box, score, person in zip(box_list, scores, keypoints, strict=True)
        ],
    }
    if out_json:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(document, indent=1))
    else:
        click.echo(json.dumps(document))
    if out_image:
        import cv2

        drawn = draw_poses(image, keypoints, threshold=threshold, boxes_xywh=box_list)
        Path(out_image).parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(out_image, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
            raise click.ClickException(f"{out_image}: could not write the image (is the extension .png or .jpg?)")
