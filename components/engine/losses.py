"""Heatmap losses and the consistency ramp-up.

Both losses are SimpleBaseline's `0.5 * mean squared error`, averaged over every heatmap pixel of
every keypoint, with a per-keypoint weight in front: masked keypoints contribute nothing (and get
no gradient) but still count in the denominator, so the loss scale does not jump when few
pseudo-labels pass the confidence threshold.
"""

from __future__ import annotations

import math

import torch


def _weighted_mse(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, foreground_weight: float = 0.0
) -> torch.Tensor:
    if pred.shape != target.shape:
        raise ValueError(f"heatmaps {tuple(pred.shape)} vs target {tuple(target.shape)}")
    if weight.shape != pred.shape[:2]:
        raise ValueError(f"weight must be [B,K]={tuple(pred.shape[:2])}, got {tuple(weight.shape)}")
    squared = (pred.float() - target.float()).square()
    if foreground_weight:
        # clamped: raw teacher pseudo-heatmaps dip below 0, and a negative pixel weight rewards error
        squared = squared * (1.0 + foreground_weight * target.float().clamp(0.0, 1.0))
    return 0.5 * (squared.mean(dim=(2, 3)) * weight.float()).mean()


def heatmap_mse(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, foreground_weight: float = 0.0
) -> torch.Tensor:
    """Supervised loss; `weight` [B,K] is the keypoint visibility weight (0 for unlabeled keypoints).

    `foreground_weight` w scales each pixel's error by 1 + w * target, so the few pixels around a
    joint are not drowned by the background: a network trained from scratch leaves the all-zero
    plateau far sooner (train.foreground_weight; 0 is SimpleBaseline's plain MSE).
    """
    return _weighted_mse(pred, target, weight, foreground_weight)


def consistency_loss(
    pred: torch.Tensor, pseudo: torch.Tensor, mask: torch.Tensor, foreground_weight: float = 0.0
) -> torch.Tensor:
    """Student vs pseudo-heatmaps; `mask` [B,K] (bool or float) keeps the confident keypoints only."""
    mask = mask.to(pred.dtype) if mask.dtype == torch.bool else mask
    return _weighted_mse(pred, pseudo.detach(), mask, foreground_weight)


def rampup(step: int, iters: int) -> float:
    """Sigmoid-shaped ramp exp(-5 (1 - t)^2), t = step / iters clipped to [0, 1] (Laine & Aila)."""
    if iters <= 0:
        return 1.0
    t = min(max(step / iters, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)
