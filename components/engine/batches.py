"""The batches the training loop passes around, as typed dicts (what the datasets' items stack into).

Keys that the objective reads are required; the per-person bookkeeping the datasets add (box,
ids, crop keypoints) is optional. The objective still checks the required keys at run time, with
an error that names what is missing, because a batch from a user's own dataset is untyped.
"""

from __future__ import annotations

from typing import NotRequired, Required, TypedDict

import torch


class _PersonFields(TypedDict, total=False):
    """What the datasets add per person: the crop box and the COCO ids."""

    center: torch.Tensor
    scale: torch.Tensor
    image_id: torch.Tensor
    ann_id: torch.Tensor


class LabeledBatch(_PersonFields):
    """Labeled crops [B,3,H,W] with heatmap targets [B,K,h,w], their weights [B,K] (and crop keypoints [B,K,3])."""

    image: Required[torch.Tensor]
    target: Required[torch.Tensor]
    target_weight: Required[torch.Tensor]
    keypoints: torch.Tensor


class UnlabeledBatch(_PersonFields):
    """Easy and hard views [B,3,H,W] of the same people, the easy -> hard input affine [B,2,3], its mirror flag [B]."""

    easy: Required[torch.Tensor]
    hard: Required[torch.Tensor]
    easy_to_hard: Required[torch.Tensor]
    flipped: Required[torch.Tensor]


LABELED_KEYS = ("image", "target", "target_weight")
UNLABELED_KEYS = ("easy", "hard", "easy_to_hard", "flipped")
IMAGE_KEYS = ("image", "easy", "hard")


class PseudoTargets(TypedDict):
    """Teacher (and reviewer) heatmaps in the hard views' frame [B,K,h,w], with peak coords [B,K,2] and values [B,K]."""

    teacher: torch.Tensor
    teacher_coords: torch.Tensor
    teacher_conf: torch.Tensor
    reviewer: NotRequired[torch.Tensor]
    reviewer_coords: NotRequired[torch.Tensor]
    reviewer_conf: NotRequired[torch.Tensor]
