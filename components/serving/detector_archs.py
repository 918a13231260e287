"""The torchvision person detectors `predict --detector` can load, by name.

Kept apart from `detector.py` so the CLI can offer the names without importing torch.
"""

from __future__ import annotations

from typing import Literal

DetectorArch = Literal[
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
]
DETECTOR_ARCHS: tuple[str, ...] = DetectorArch.__args__  # type: ignore[attr-defined]
DEFAULT_DETECTOR_ARCH: DetectorArch = "fasterrcnn_mobilenet_v3_large_fpn"
