"""The GPU data path's device side: JPEG bytes in, the CPU datasets' training batches out.

`train.data_path: gpu` replaces the loader workers' decode-warp-augment-targets work (CPU path:
`datasets.LabeledPoseDataset`, `datasets.UnlabeledPairDataset`) with batched tensor operations on
the training device: `torchvision.io.decode_jpeg` decodes a batch (nvJPEG on CUDA, libjpeg on the
CPU), the views are drawn from a seeded `torch.Generator` living on the device, and
`device_views` warps, jitters, blurs and builds the targets. The batches have the same keys,
shapes, dtypes and meaning as the CPU path's, so the objective cannot tell them apart; the random
draws differ (another generator), their distributions do not.

Each `*_from_views` method takes the views explicitly, which is how a test feeds the CPU path's
views and compares the geometry; `labeled` / `unlabeled` draw them first.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from components.config import ExperimentConfig
from components.data.device_views import (
    ViewBatch,
    apply_affines,
    apply_photometric_,
    base_views,
    blur_draws,
    blur_sigmas,
    half_body_views,
    homogeneous_affines,
    invert_affines,
    photometric_factors,
    sample_views,
    warp_crops,
    where_views,
)
from components.data.records import RecordError
from components.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from components.heatmap_codec import gaussian_targets

Batch = dict[str, Any]


class PhotometricDraws(NamedTuple):
    """The hard view's photometric randomness: colour factors [B, 3], blur sigma [B] (0: none), noise [B, 3, H, W]."""

    factors: torch.Tensor
    blur_sigma: torch.Tensor
    noise: torch.Tensor | None


class DeviceBatchMaker:
    """Decodes, crops, augments and builds targets for one stream's batches on `device`."""

    def __init__(self, cfg: ExperimentConfig, device: torch.device) -> None:
        self.input_cfg, self.augment_cfg, self.device = cfg.input, cfg.augment, device
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.keypoints = cfg.keypoints.keypoint_set()
        self.flip_index = torch.as_tensor(self.keypoints.flip_index, device=device)

    # decoding -------------------------------------------------------------------------------------
    def decode(self, raw: Batch) -> torch.Tensor:
        """Every item's image as RGB uint8, zero-padded bottom/right to one size: [B, 3, H, W] on the device.

        An image shared by several people of the batch is decoded once.
        """
        first_of: dict[str, int] = {}
        for position, path in enumerate(raw["path"]):
            first_of.setdefault(path, position)
        unique = list(first_of.values())
        try:
            decoded = decode_jpeg([raw["jpeg"][i] for i in unique], mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError as exc:
            self._raise_undecodable(raw, unique, exc)
        height = max(image.shape[1] for image in decoded)
        width = max(image.shape[2] for image in decoded)
        padded = torch.zeros(len(decoded), 3, height, width, dtype=torch.uint8, device=self.device)
        for slot, image in zip(padded, decoded):
            slot[:, : image.shape[1], : image.shape[2]] = image
        slot_of = {path: slot for slot, path in enumerate(first_of)}
        index = torch.tensor([slot_of[path] for path in raw["path"]], device=self.device)
        return padded if len(unique) == len(raw["path"]) else padded.index_select(0, index)

    def _raise_undecodable(self, raw: Batch, positions: list[int], exc: RuntimeError) -> None:
        """Name the first file that does not decode alone (a batch error does not say which)."""
        for position in positions:
            try:
                decode_jpeg(raw["jpeg"][position], mode=ImageReadMode.RGB)
            except RuntimeError:
                raise RecordError(
                    raw["path"][position],
                    f"image_id {int(raw['image_id'][position])} (annotation {int(raw['ann_id'][position])})",
                    "the image cannot be decoded as a JPEG",
                ) from exc
        raise exc

    def _normalise(self, pixels_01: torch.Tensor) -> torch.Tensor:
        return (pixels_01 - self.mean) / self.std

    def _uniforms(self, batch: int, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(batch, count, generator=generator, device=generator.device, dtype=torch.float64)

    # labeled crops --------------------------------------------------------------------------------
    def labeled_views(self, raw: Batch, generator: torch.Generator) -> tuple[ViewBatch, torch.Tensor]:
        """The views of `LabeledPoseDataset.sample_view` (half body, zoom, rotation, mirror) and which took a half body.

        Six uniforms per person, always: (half-body gate, half pick, zoom, rotation gate, rotation, mirror).
        """
        aug, size = self.augment_cfg, self.input_cfg
        keypoints = raw["keypoints"].to(self.device)
        draws = self._uniforms(keypoints.shape[0], 6, generator).to(self.device)
        base = base_views(raw["bbox"].to(self.device), size.aspect_ratio, size.box_padding)
        half, exists = half_body_views(keypoints, draws[:, 1], size.aspect_ratio, self.keypoints)
        took_half = (draws[:, 0] < aug.half_body_prob) & exists
        view = where_views(took_half, half, base)
        flip_prob = 0.5 if aug.flip else 0.0
        return sample_views(view, draws[:, 2:], aug.scale_factor, aug.rotation, aug.rotation_prob, flip_prob), took_half

    def labeled(self, raw: Batch, generator: torch.Generator) -> Batch:
        return self.labeled_from_views(raw, self.decode(raw), self.labeled_views(raw, generator)[0])

    def labeled_from_views(self, raw: Batch, images: torch.Tensor, views: ViewBatch) -> Batch:
        """`LabeledPoseDataset` items, batched: crops, heatmap targets, keypoints in the crop, box, ids."""
        size = self.input_cfg
        affines = views.affines(size.image_size)
        crops = warp_crops(images, affines, size.image_size)
        keypoints = raw["keypoints"].to(self.device, torch.float64)
        xy = apply_affines(keypoints[..., :2], affines)
        keypoints = torch.cat([xy, keypoints[..., 2:]], dim=2)
        keypoints = torch.where(views.flip[:, None, None], keypoints[:, self.flip_index], keypoints)
        target, weight = gaussian_targets(keypoints, size.heatmap_size, size.heatmap_stride, size.sigma)
        keypoints = keypoints.masked_fill(weight[..., None] == 0, 0.0)
        return {
            "image": self._normalise(crops / 255.0),
            "target": target,
            "target_weight": weight,
            "keypoints": keypoints.to(torch.float32),
            "center": views.center.to(torch.float32),
            "scale": views.scale.to(torch.float32),
            "image_id": raw["image_id"].to(self.device),
            "ann_id": raw["ann_id"].to(self.device),
        }

    # unlabeled pairs ------------------------------------------------------------------------------
    def unlabeled_views(self, raw: Batch, generator: torch.Generator) -> tuple[ViewBatch, ViewBatch, ViewBatch]:
        """(base, easy, hard) as `UnlabeledPairDataset.sample_views`: eight uniforms per person."""
        aug, size = self.augment_cfg, self.input_cfg
        base = base_views(raw["bbox"].to(self.device), size.aspect_ratio, size.box_padding)
        draws = self._uniforms(base.center.shape[0], 8, generator).to(self.device)
        easy = sample_views(base, draws[:, :4], aug.easy_scale_factor, aug.easy_rotation)
        hard = sample_views(base, draws[:, 4:], *aug.hard_affine_ranges(), 0.5 if aug.flip else 0.0)
        return base, easy, hard

    def photometric_draws(self, batch: int, generator: torch.Generator) -> PhotometricDraws:
        """Colour factors, blur sigma (0: none) and noise of the hard views, in a fixed order."""
        aug = self.augment_cfg
        height, width = self.input_cfg.image_size
        factors = photometric_factors(batch, generator, aug.color_jitter).to(self.device)
        sigma = blur_sigmas(blur_draws(batch, generator), aug.blur_prob).to(self.device)
        noise = None
        if aug.noise_std > 0:
            shape = (batch, 3, height, width)
            noise = (torch.randn(shape, generator=generator, device=generator.device) * aug.noise_std).to(self.device)
        return PhotometricDraws(factors, sigma, noise)

    def unlabeled(self, raw: Batch, generator: torch.Generator) -> Batch:
        base, easy, hard = self.unlabeled_views(raw, generator)
        photometric = self.photometric_draws(base.center.shape[0], generator)
        return self.unlabeled_from_views(raw, self.decode(raw), base, easy, hard, photometric)

    def unlabeled_from_views(
        self,
        raw: Batch,
        images: torch.Tensor,
        base: ViewBatch,
        easy: ViewBatch,
        hard: ViewBatch,
        photometric: PhotometricDraws,
    ) -> Batch:
        """`UnlabeledPairDataset` items, batched: easy and hard crops, the easy -> hard affine, mirror, box, ids."""
        size = self.input_cfg.image_size
        pixels = images.to(torch.float32)  # once for both warps
        easy_affine, hard_affine = easy.affines(size), hard.affines(size)
        easy_crops = warp_crops(pixels, easy_affine, size) / 255.0
        hard_crops = warp_crops(pixels, hard_affine, size) / 255.0
        apply_photometric_(hard_crops, photometric.factors, photometric.noise, photometric.blur_sigma)
        easy_to_hard = homogeneous_affines(hard_affine) @ homogeneous_affines(invert_affines(easy_affine))
        return {
            "easy": self._normalise(easy_crops),
            "hard": self._normalise(hard_crops),
            "easy_to_hard": easy_to_hard[:, :2].to(torch.float32),
            "flipped": hard.flip,
            "center": base.center.to(torch.float32),
            "scale": base.scale.to(torch.float32),
            "image_id": raw["image_id"].to(self.device),
            "ann_id": raw["ann_id"].to(self.device),
        }
