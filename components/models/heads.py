"""Heatmap heads: SimpleBaseline's deconvolution head and the light Multi-level Feature Learning heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _init_heatmap_layer(layer: nn.Conv2d | nn.ConvTranspose2d) -> None:
    """SimpleBaseline's init: tiny weights so the first heatmaps are near zero, not noise."""
    nn.init.normal_(layer.weight, std=0.001)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def match_size(heatmaps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (pixel-centre aligned) when a map is not already `size`, e.g. odd input widths."""
    if tuple(heatmaps.shape[-2:]) == tuple(size):
        return heatmaps
    return F.interpolate(heatmaps, size=size, mode="bilinear", align_corners=False)


class DeconvHead(nn.Module):
    """Stride-2 transposed convolutions (k4, BN, ReLU) from the deepest stage, then 1x1 to K heatmaps.

    With zero deconvolution layers (HRNet's stride-4 branch) it is the 1x1 final layer alone.
    """

    def __init__(self, in_channels: int, num_keypoints: int, num_deconv: int, deconv_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_deconv):
            deconv = nn.ConvTranspose2d(channels, deconv_channels, 4, stride=2, padding=1, bias=False)
            _init_heatmap_layer(deconv)
            layers += [deconv, nn.BatchNorm2d(deconv_channels), nn.ReLU(inplace=True)]
            channels = deconv_channels
        self.upsample = nn.Sequential(*layers)
        self.final = nn.Conv2d(channels, num_keypoints, 1)
        _init_heatmap_layer(self.final)

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return match_size(self.final(self.upsample(features)), size)


class FPNHead(nn.Module):
    """U-Net/FPN decoder: upsample the deepest map, add 1x1 lateral projections of shallower stages.

    From random init a stride-32 map alone cannot place joints finely; the skips carry the spatial
    detail of the stride-16/8/4 stages, so localisation is learned in far fewer iterations.
    """

    def __init__(self, in_channels: dict[int, int], num_keypoints: int, channels: int):
        super().__init__()
        self.strides = tuple(sorted(in_channels, reverse=True))  # deepest first, the heatmap stride last
        self.lateral = nn.ModuleDict(
            {
                str(s): nn.Sequential(
                    nn.Conv2d(in_channels[s], channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
                )
                for s in self.strides
            }
        )
        self.smooth = nn.ModuleDict(
            {
                str(s): nn.Sequential(
                    nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                    nn.BatchNorm2d(channels),
                    nn.ReLU(inplace=True),
                )
                for s in self.strides[1:]
            }
        )
        self.final = nn.Conv2d(channels, num_keypoints, 1)
        _init_heatmap_layer(self.final)

    def forward(self, features: dict[int, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        top = self.lateral[str(self.strides[0])](features[self.strides[0]])
        for s in self.strides[1:]:
            skip = self.lateral[str(s)](features[s])
            top = F.interpolate(top, size=skip.shape[-2:], mode="nearest") + skip
            top = self.smooth[str(s)](top)
        return match_size(self.final(top), size)


class MFLHead(nn.Module):
    """Multi-level Feature Learning head: 1x1 reduce -> 3x3 -> 1x1 to K, bilinearly upsampled to the heatmap size.

    Cheap heatmap supervision for an earlier backbone stage; training only, inference uses the main head.
    """

    def __init__(self, in_channels: int, num_keypoints: int, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.final = nn.Conv2d(channels, num_keypoints, 1)
        _init_heatmap_layer(self.final)

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return match_size(self.final(self.body(features)), size)
