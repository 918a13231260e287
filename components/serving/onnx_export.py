"""The whole predictor as one ONNX graph: `image` uint8 [H, W, 3] + `boxes` float32 [N, 4] -> `keypoints` [N, K, 3].

Exported with the `torch.export`-based exporter (`dynamo=True`, needs onnxscript): the TorchScript
exporter of torch 2.14 still runs but traces the image size into the graph as a constant, so the
crop of any image but the example one lands in the wrong place. N, H and W are dynamic dimensions.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from components.config import ExperimentConfig
from components.serving.predictor import TopDownPredictor

ONNX_FILE = "model.onnx"
ONNX_FLIP_FILE = "model-flip-test.onnx"
INPUT_NAMES = ("image", "boxes")
OUTPUT_NAME = "keypoints"


def export_onnx(network: nn.Module, cfg: ExperimentConfig, path: str | Path, flip_test: bool = False) -> Path:
    """Write the predictor of `network` (eval mode, CPU) to `path`; input and model settings ride along as
    metadata (not the whole config: storage endpoints and paths do not belong in a shipped file)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    predictor = TopDownPredictor(network, cfg, flip_test=flip_test).cpu().eval()
    # an example away from the sizes torch.export specialises (0 and 1) and from the crop's own size
    image = torch.zeros((97, 83, 3), dtype=torch.uint8)
    boxes = torch.tensor([[5.0, 7.0, 40.0, 60.0], [30.0, 2.0, 50.0, 90.0]])
    dims = {"image": {0: torch.export.Dim("H", min=2), 1: torch.export.Dim("W", min=2)}}
    dims["boxes"] = {0: torch.export.Dim("N", min=1)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            predictor,
            (image, boxes),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes=dims,
            dynamo=True,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    model = program.model_proto
    metadata = {
        "trs_pose.flip_test": json.dumps(flip_test),
        "trs_pose.input": json.dumps(cfg.input.model_dump(mode="json")),
        "trs_pose.model": json.dumps(cfg.model.model_dump(mode="json")),
        "trs_pose.keypoints": json.dumps(cfg.keypoints.keypoint_set().as_dict()),
    }
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(model, str(path))
    return path
