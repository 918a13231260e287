"""`trs-pose predict`: keypoints for the people in one image, as JSON and as a drawn image."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from cli.evaluate import override_config, resolve_device
from cli.model_options import model_source_options, open_model
from components.serving.detector_archs import DEFAULT_DETECTOR_ARCH, DETECTOR_ARCHS


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_boxes(raw: Any, source: str, width: int, height: int) -> tuple[list[list[float]], list[float]]:
    """Boxes `[[x, y, w, h], ...]`, or detection records `[{"bbox": [...], "score": s}, ...]`, with their scores.

    Each box must be finite, have positive width and height and overlap the `width` x `height` image.
    """
    if not isinstance(raw, list) or not raw:
        raise click.BadParameter(f"{source}: expected a non-empty JSON list of [x, y, w, h] boxes")
    if all(_is_finite_number(v) for v in raw):  # `[17, 43, 368, 565]`: one box without the list around it
        flat = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in raw)
        raise click.BadParameter(
            f"{source}: boxes are a list of [x, y, w, h] boxes, and {json.dumps(raw)} is one box without the "
            f"outer brackets; write [[{flat}]]"
        )
    boxes: list[list[float]] = []
    scores: list[float] = []
    for index, item in enumerate(raw):
        box, score = (item.get("bbox"), item.get("score", 1.0)) if isinstance(item, dict) else (item, 1.0)
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(_is_finite_number(v) for v in box)
            or box[2] <= 0
            or box[3] <= 0
        ):
            raise click.BadParameter(
                f"{source}: box {index}: rule '[x, y, w, h] of finite numbers with positive w and h': got {box!r}"
            )
        x, y, w, h = box
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise click.BadParameter(
                f"{source}: box {index}: rule 'the box overlaps the {width}x{height} image': got {box!r}"
            )
        if not _is_finite_number(score):
            raise click.BadParameter(f"{source}: box {index}: rule 'score is a finite number': got {score!r}")
        boxes.append([float(v) for v in box])
        scores.append(float(score))
    return boxes, scores


def read_rgb(path: str) -> Any:
    """The image under `data validate`'s rule: it must decode completely (a truncated JPEG is refused)."""
    from components.data.validation import ImageError, load_rgb

    try:
        return load_rgb(path)
    except ImageError as exc:
        raise click.BadParameter(str(exc), param_hint="--image") from exc


def check_out_image(path: str | None) -> None:
    """An --out-image whose extension OpenCV cannot write is refused before any inference runs."""
    if path is None:
        return
    import cv2

    if not cv2.haveImageWriter(path):
        raise click.BadParameter(
            f"{path}: no image format for this extension; use .png or .jpg", param_hint="--out-image"
        )


@click.command()
@click.option(
    "--checkpoint",
    default=None,
    help="Checkpoint file, or a checkpoint directory / s3:// prefix (its latest).",
)
@model_source_options
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
    "--detector",
    type=click.Path(exists=True, dir_okay=False),
    help="Find the people first with this torchvision person detector's weights (a state dict file).",
)
@click.option(
    "--detector-arch",
    type=click.Choice(DETECTOR_ARCHS),
    default=DEFAULT_DETECTOR_ARCH,
    show_default=True,
    help="The torchvision architecture of --detector.",
)
@click.option(
    "--detector-threshold",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Detector score below which a box is not a person.",
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
    checkpoint: str | None,
    model_uri: str | None,
    runtime: str,
    tracking_uri: str | None,
    image_path: str,
    boxes: str | None,
    boxes_file: str | None,
    detector: str | None,
    detector_arch: str,
    detector_threshold: float,
    out_json: str | None,
    out_image: str | None,
    flip_test: bool | None,
    threshold: float,
    device: str,
    overrides: tuple[str, ...],
) -> None:
    """Keypoints of the people in one image (one box a person), as JSON and a drawn image.

    The JSON's `box_source` says where the boxes came from: `boxes` (given), `detector` or
    `whole_image` (neither: the whole image is one person).

    \b
    trs-pose predict --checkpoint ckpt.pt --image people.jpg --boxes '[[10,20,80,200]]' \\
        --out-json people.json --out-image people.png
    trs-pose predict --model models:/trs-pose@champion --runtime onnx --image people.jpg \\
        --detector fasterrcnn_mobilenet_v3_large_fpn.pth
    """
    if sum(option is not None for option in (boxes, boxes_file, detector)) > 1:
        raise click.UsageError("give at most one of --boxes, --boxes-file or --detector")
    if (checkpoint is None) == (model_uri is None):
        raise click.UsageError("give exactly one of --checkpoint or --model")
    check_out_image(out_image)
    image = read_rgb(image_path)
    height, width = image.shape[:2]
    source = "boxes"
    if boxes is not None:
        try:
            box_list, box_scores = parse_boxes(json.loads(boxes), "--boxes", width, height)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--boxes") from exc
    elif boxes_file is not None:
        try:
            box_list, box_scores = parse_boxes(json.loads(Path(boxes_file).read_text()), boxes_file, width, height)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"{boxes_file}: not valid JSON: {exc}", param_hint="--boxes-file") from exc
    elif detector is not None:
        box_list, box_scores = _detect(detector, detector_arch, detector_threshold, image)
        source = "detector"
    else:
        box_list, box_scores = [[0.0, 0.0, float(width), float(height)]], [1.0]
        source = "whole_image"

    from components.evaluation.drawing import draw_poses

    with open_model(checkpoint, model_uri, tracking_uri) as opened:
        cfg = override_config(opened.cfg, overrides)
        keypoints, scores = _predict(opened, cfg, runtime, image, box_list, box_scores, flip_test, device, source)
    keypoint_set = cfg.keypoints.keypoint_set()
    document = {
        "image": image_path,
        "box_source": source,
        "keypoint_names": list(keypoint_set.names),
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

        drawn = draw_poses(image, keypoints, threshold=threshold, boxes_xywh=box_list, keypoint_set=keypoint_set)
        Path(out_image).parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(out_image, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
            raise click.ClickException(f"{out_image}: could not write the image (is the extension .png or .jpg?)")


def _detect(weights: str, arch: str, threshold: float, image: Any) -> tuple[list[list[float]], list[float]]:
    from components.serving.detector import DetectorError, detect_people, load_detector

    try:
        detector = load_detector(weights, arch)  # type: ignore[arg-type]
    except DetectorError as exc:
        raise click.BadParameter(str(exc), param_hint="--detector") from exc
    boxes, scores = detect_people(detector, image, threshold)
    return boxes.astype(float).tolist(), scores.tolist()


def _predict(
    opened: Any,
    cfg: Any,
    runtime: str,
    image: Any,
    box_list: list[list[float]],
    box_scores: list[float],
    flip_test: bool | None,
    device: str,
    source: str,
) -> tuple[Any, Any]:
    """torch: the evaluation's own path (`predict_boxes`); onnx: the exported whole predictor."""
    import tempfile

    import numpy as np

    from components.evaluation.inference import predict_boxes
    from components.serving.inputs import InputError, check_boxes
    from components.serving.model_source import onnx_runtime
    from components.serving.runtime import predict_people

    try:
        boxes = check_boxes(box_list, image.shape, name="--boxes" if source == "boxes" else source)
    except InputError as exc:
        raise click.BadParameter(str(exc)) from exc
    if runtime == "torch":
        opened.network.to(resolve_device(device))
        return predict_boxes(opened.network, image, boxes, cfg, box_scores=box_scores, flip_test=flip_test)
    flip = cfg.eval.flip_test if flip_test is None else flip_test
    with tempfile.TemporaryDirectory(prefix="trs-pose-onnx-") as scratch:
        onnx = onnx_runtime(opened.network, cfg, flip, opened.onnx_path, scratch)
        return predict_people(onnx, image, boxes, np.asarray(box_scores, dtype=np.float64), cfg)
