"""The hard views of each unlabeled crop: M paths (`train.consistency.hard_views`), each made by its recipe.

Where the ops run: on the training device, inside the objective, on the whole batch of hard
crops, after the teacher's pseudo-targets are known (as Keypoint-Mix does): joint cutout and joint
cut-occlude need keypoints, which for an unlabeled crop only the teacher's peaks give, and CutMix,
MixUp and joint cut-occlude need the other crops of the batch. Running on tensors there makes the
CPU and GPU data paths agree by construction: both hand over the same hard crop, and the same code
with the same generator draws makes its views.

Multi-path: the M views are drawn from the one hard crop the data path gives, as MultiAugs' paths
share one affine and differ in their occluding ops. Path m takes recipe `m % len(hard_recipe)`
(components/hard_recipe.py). The data paths are untouched, and the teacher and reviewer run once
per easy view: their heatmaps are carried into every path (`carry`).

Geometry: a recipe may start with `af`, a further rotation and zoom of the hard crop (MultiAugs'
second affine, "A60", drawn per path here). The path's image is warped by it and its
pseudo-targets are the easy-view heatmaps warped once by the composed map easy -> hard -> path, so
targets follow the pixels exactly. The other ops only hide, replace or recolour pixels, and leave
the targets as they are (as MultiAugs does).

With one path and an empty recipe (the default, `standard`) nothing here draws or changes a pixel:
the hard view is the data path's, as before. All randomness comes from the caller's generator (the
training loop's, saved in checkpoints), in a fixed order: geometry, then path by path, op by op.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray

from components.config import AugmentConfig, HardOpsConfig
from components.data.device_views import homogeneous_affines, warp_crops
from components.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from components.engine.occlusions import (
    cutmix_boxes,
    cutout_boxes,
    joint_cutmix_boxes,
    joint_cutout_boxes,
    mixup,
    paste,
)
from components.engine.photometric_policy import (
    PolicyDraws,
    apply_policy,
    randaugment_draws,
    trivialaugment_draws,
)
from components.engine.pseudo_labels import warp_heatmaps
from components.hard_recipe import GEOMETRIC, path_recipes


class PathGeometry(NamedTuple):
    """Per path, the map hard-crop px -> path px [B, 2, 3] float64, or None where the path keeps the crop's frame."""

    affines: tuple[torch.Tensor | None, ...]


def path_affines(batch: int, size: tuple[int, int], cfg: HardOpsConfig, generator: torch.Generator) -> torch.Tensor:
    """The `af` op's maps [B, 2, 3] (float64, on the generator's device): zoom and rotate about the crop centre.

    MultiAugs' hard affine (`get_batch_affine_transform`): rotation N(0, r) clipped at 2r with
    probability `affine_rotation_prob`, zoom N(1, s) clipped to [1 - s, 1 + s]. Three draws of [B].
    """
    dev, height, width = generator.device, *size
    rotation_std, zoom_std = cfg.affine_rotation, cfg.affine_scale
    angle = (torch.randn(batch, generator=generator, device=dev, dtype=torch.float64) * rotation_std).clamp(
        -2 * rotation_std, 2 * rotation_std
    )
    angle = angle * (torch.rand(batch, generator=generator, device=dev, dtype=torch.float64) < cfg.affine_rotation_prob)
    zoom = (1.0 + zoom_std * torch.randn(batch, generator=generator, device=dev, dtype=torch.float64)).clamp(
        1.0 - zoom_std, 1.0 + zoom_std
    )
    theta = angle * (math.pi / 180.0)
    cos, sin = zoom * torch.cos(theta), zoom * torch.sin(theta)
    linear = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)  # as crop_affines rotates
    centre = torch.tensor([(width - 1) * 0.5, (height - 1) * 0.5], dtype=torch.float64, device=dev)
    offset = centre - linear @ centre
    return torch.cat([linear, offset[:, :, None]], dim=2)


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The [B, 2, 3] affine `outer` after `inner`, in float64."""
    inner = inner.to(outer.device, torch.float64)
    return (homogeneous_affines(outer.to(torch.float64)) @ homogeneous_affines(inner))[:, :2]


def carry(
    heatmaps: torch.Tensor,
    easy_to_hard: torch.Tensor,
    flipped: torch.Tensor,
    stride: int,
    flip_index: NDArray[np.int64] | torch.Tensor,
    geometry: PathGeometry | None = None,
) -> torch.Tensor:
    """Easy-view heatmaps [B, K, h, w] carried into every path: [M * B, K, h, w], path-major.

    Without `geometry` (one path in the crop's frame) this is `warp_heatmaps` itself. A path with
    its own affine gets one warp by the composed map, not two in a row. `flip_index` is the keypoint
    set's mirror permutation (a mirrored hard view swaps left and right channels).
    """
    if geometry is None:
        return warp_heatmaps(heatmaps, easy_to_hard, flipped, stride, flip_index)
    base: torch.Tensor | None = None
    paths = []
    for affine in geometry.affines:
        if affine is None:
            if base is None:
                base = warp_heatmaps(heatmaps, easy_to_hard, flipped, stride, flip_index)
            paths.append(base)
        else:
            paths.append(warp_heatmaps(heatmaps, compose(affine, easy_to_hard), flipped, stride, flip_index))
    return torch.cat(paths) if len(paths) > 1 else paths[0]


class HardViews:
    """The recipes of `augment.hard_recipe` over `paths` hard views, and the ops that make them."""

    def __init__(self, augment: AugmentConfig, paths: int = 1) -> None:
        if paths < 1:
            raise ValueError(f"hard views: need at least one path, got {paths}")
        self.recipes = path_recipes(augment.hard_recipe, paths)
        self.ops = augment.hard_ops
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    @property
    def paths(self) -> int:
        return len(self.recipes)

    @property
    def moves(self) -> bool:
        """Whether some path has its own geometry (its targets need their own warp)."""
        return any(op in GEOMETRIC for recipe in self.recipes for op in recipe)

    @property
    def draws(self) -> bool:
        """Whether making the views draws from the generator at all."""
        return any(self.recipes)

    def geometry(self, batch: int, size: tuple[int, int], generator: torch.Generator | None) -> PathGeometry | None:
        """Each path's frame; None for the one-path, crop-frame case (the data path's hard view as it is)."""
        if self.paths == 1 and not self.moves:
            return None
        if self.moves and generator is None:
            raise ValueError("the `af` hard-view op needs the training loop's torch.Generator for determinism")
        affines = tuple(
            path_affines(batch, size, self.ops, generator) if recipe[:1] == ("af",) and generator is not None else None
            for recipe in self.recipes
        )
        return PathGeometry(affines)

    def warp(self, hard: torch.Tensor, geometry: PathGeometry | None) -> torch.Tensor:
        """The normalised hard crops [B, 3, H, W] in every path's frame, [M * B, 3, H, W]; outside: mean colour."""
        if geometry is None:
            return hard
        size = (hard.shape[-2], hard.shape[-1])
        views = [hard if affine is None else warp_crops(hard, affine, size) for affine in geometry.affines]
        return torch.cat(views) if len(views) > 1 else views[0]

    def apply(
        self,
        images: torch.Tensor,
        keypoints: torch.Tensor,
        valid: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Each path's recipe ops on its block of `images` [M * B, 3, H, W].

        `keypoints` [M * B, K, 2] are input pixels, `valid` [M * B, K] says which to use.

        Ops that pair crops (CutMix, MixUp, joint cut-occlude) pair them within a path.
        """
        if not any(op not in GEOMETRIC for recipe in self.recipes for op in recipe):
            return images
        if generator is None:
            raise ValueError("hard-view recipes need the training loop's torch.Generator for determinism")
        batch = images.shape[0] // self.paths
        blocks = []
        for path, recipe in enumerate(self.recipes):
            rows = slice(path * batch, (path + 1) * batch)
            block = images[rows]
            for op in recipe:
                if op not in GEOMETRIC:
                    block = self.op(op, block, keypoints[rows], valid[rows], generator)
            blocks.append(block)
        return torch.cat(blocks) if len(blocks) > 1 else blocks[0]

    def op(
        self,
        name: str,
        images: torch.Tensor,
        keypoints: torch.Tensor,
        valid: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """One non-geometric op on a batch of normalised crops (see components/hard_recipe.py for the codes)."""
        size = (images.shape[-2], images.shape[-1])
        cfg = self.ops
        if name == "jc":
            return paste(images, joint_cutout_boxes(keypoints, valid, size, cfg, generator))
        if name == "jo":
            return paste(images, joint_cutmix_boxes(keypoints, valid, size, cfg, generator))
        if name == "co":
            return paste(images, cutout_boxes(images.shape[0], size, cfg, generator))
        if name == "cm":
            return paste(images, cutmix_boxes(images.shape[0], size, cfg, generator))
        if name == "mu":
            return mixup(images, cfg, generator)
        if name == "ra":
            return self.photometric(images, self.randaugment(images.shape[0], generator))
        if name == "ta":
            return self.photometric(images, trivialaugment_draws(images.shape[0], generator))
        if name == "yo":
            return self.yoco(images, generator)
        raise ValueError(f"unknown hard-view op {name!r}")

    def randaugment(self, batch: int, generator: torch.Generator) -> PolicyDraws:
        return randaugment_draws(batch, self.ops.randaugment_ops, self.ops.randaugment_magnitude, generator)

    def photometric(self, images: torch.Tensor, draws: PolicyDraws) -> torch.Tensor:
        """A photometric policy on normalised crops: back to RGB in [0, 1], the ops, normalised again."""
        mean, std = self.mean.to(images.device, images.dtype), self.std.to(images.device, images.dtype)
        pixels = (images * std + mean).clamp(0.0, 1.0)
        return (apply_policy(pixels, draws) - mean) / std

    def yoco(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """YOCO as MultiAugs uses it: per crop, the bottom half (cut across, chance 1/2) or else the right
        half gets RandAugment; the other half keeps its pixels."""
        batch, _, height, width = images.shape
        across = torch.rand(batch, generator=generator, device=generator.device) < 0.5
        recoloured = self.photometric(images, self.randaugment(batch, generator))
        across = across.to(images.device).view(batch, 1, 1, 1)
        rows = (torch.arange(height, device=images.device) >= height // 2).view(1, 1, height, 1)
        cols = (torch.arange(width, device=images.device) >= width // 2).view(1, 1, 1, width)
        return torch.where(torch.where(across, rows, cols), recoloured, images)
