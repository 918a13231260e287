"""What the registry serves: the student reduced to one tensor out, as MLflow's pyfunc expects."""

from __future__ import annotations

import torch
from torch import nn


class HeatmapsOnly(nn.Module):
    """Wraps a PoseNet (whose forward returns PoseOutput(heatmaps, aux)) so that forward returns
    only the main heatmaps [B,K,h,w]; the MFL auxiliary maps are a training device, not an output."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        output = self.student(images)
        return getattr(output, "heatmaps", output)
