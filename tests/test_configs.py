"""The shipped configs: each validates and builds a network whose heatmaps fit its input settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from components.config import load_config
from components.models import build_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_every_config_is_found():
    assert {p.stem for p in CONFIGS} >= {"demo", "coco_1k", "coco_5k", "coco_10k", "ssl_gain_cpu"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates_and_its_network_maps_an_input_to_heatmaps(path: Path):
    cfg = load_config(path, ["model.pretrained=null"])  # no hub downloads here
    model = build_model(cfg).eval()
    height, width = cfg.input.image_size
    with torch.no_grad():
        heatmaps = model(torch.zeros(1, 3, height, width)).heatmaps
    assert tuple(heatmaps.shape[-2:]) == cfg.input.heatmap_size
