"""`trs-pose export`: the whole predictor (image + boxes in, keypoints out) as one ONNX file."""

from __future__ import annotations

from pathlib import Path

import click

from cli.model_options import open_model
from cli.servers import server_options


@click.command()
@click.option(
    "--checkpoint", default=None, help="Checkpoint file, or a checkpoint directory / s3:// prefix (its latest)."
)
@click.option(
    "--model",
    "model_uri",
    default=None,
    metavar="URI",
    help="A registered version instead: models:/NAME@ALIAS or models:/NAME/VERSION.",
)
@server_options(mlflow=True)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write model.onnx to."
)
@click.option(
    "--flip-test/--no-flip-test",
    default=False,
    show_default=True,
    help="Also write model-flip-test.onnx, which averages with the mirrored crop (twice the network cost).",
)
def export(
    checkpoint: str | None, model_uri: str | None, tracking_uri: str | None, out_dir: str, flip_test: bool
) -> None:
    """Write OUT/model.onnx: inputs `image` (uint8 [H, W, 3] RGB) and `boxes` (float32 [N, 4] x, y, w, h),
    output `keypoints` (float32 [N, 17, 3]: x, y in image pixels, score). Box expansion, crop,
    normalisation, network, argmax decoding and back-projection are all in the graph; N, H, W are free.

    \b
    trs-pose export --model models:/trs-pose@champion --out exported/
    trs-pose export --checkpoint runs/demo/checkpoints --out exported/ --flip-test
    """
    from components.serving.onnx_export import ONNX_FILE, ONNX_FLIP_FILE, export_onnx

    with open_model(checkpoint, model_uri, tracking_uri) as opened:
        written = [export_onnx(opened.network, opened.cfg, Path(out_dir) / ONNX_FILE)]
        if flip_test:
            written.append(export_onnx(opened.network, opened.cfg, Path(out_dir) / ONNX_FLIP_FILE, flip_test=True))
    for path in written:
        click.echo(f"wrote {path} (from {opened.label})")
