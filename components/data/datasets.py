"""Top-down PyTorch datasets: labeled crops with heatmap targets, unlabeled easy/hard pairs, eval crops.

Every item's randomness comes from `np.random.default_rng([seed, epoch, index])`, so an item is the
same whatever the worker count, the order of access or a resume in the middle of an epoch; call
`set_epoch` at each epoch start to draw new augmentations.
"""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

from components.config import ExperimentConfig
from components.data.geometry import apply_affine, compose_affine, invert_affine
from components.data.records import PersonRecord, RecordError, load_detection_records, load_person_records
from components.data.transforms import View, base_view, half_body_view, photometric, sample_view, to_tensor, warp
from components.heatmap_codec import gaussian_heatmaps

Item = dict[str, torch.Tensor]


def read_image(record: PersonRecord) -> NDArray[np.uint8]:
    """The record's image as HxWx3 RGB uint8; a missing or undecodable file raises `RecordError`."""
    image = cv2.imread(str(record.image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise RecordError(
            record.image_path,
            f"image_id {record.image_id} (annotation {record.ann_id})",
            "the image is missing or cannot be decoded",
        )
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def loader_worker_init(worker_id: int) -> None:
    """DataLoader `worker_init_fn` of every loader: one torch thread per worker, numpy and python seeded.

    One thread, so workers don't oversubscribe the cores. It must not call `cv2.setNumThreads`: in a
    fork()ed child of a process whose OpenCV pool ran, that call deadlocks; OpenCV is made
    single-threaded at import instead (components.data.transforms). The global numpy and python RNGs
    are seeded from torch's per-worker seed, so code drawing from them repeats; the datasets
    themselves draw from per-item generators.
    """
    torch.set_num_threads(1)
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def _ids(record: PersonRecord) -> Item:
    return {
        "image_id": torch.tensor(record.image_id, dtype=torch.int64),
        "ann_id": torch.tensor(record.ann_id, dtype=torch.int64),
    }


def _box(view: View) -> Item:
    return {
        "center": torch.tensor(view.center, dtype=torch.float32),
        "scale": torch.tensor(view.scale, dtype=torch.float32),
    }


class PersonCropDataset(Dataset[Item]):
    """What the three datasets share: records, crop geometry, the keypoint set and the per-item random stream."""

    def __init__(self, records: list[PersonRecord], cfg: ExperimentConfig, seed: int, source: str | Path) -> None:
        if not records:
            raise RecordError(source, "<annotations>", f"no usable person for {type(self).__name__}")
        self.records = records
        self.keypoints = cfg.keypoints.keypoint_set()
        self.input_cfg = cfg.input
        self.augment_cfg = cfg.augment
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def base_view(self, record: PersonRecord) -> View:
        return base_view(record.bbox, self.input_cfg.aspect_ratio, self.input_cfg.box_padding)


class LabeledPoseDataset(PersonCropDataset):
    """Labeled people (>= `data.min_keypoints` labeled keypoints) with Gaussian heatmap targets.

    With `augment=False` the crop is the plain padded box, e.g. for a held-out labeled split.
    """

    def __init__(
        self, ann_file: str | Path, image_dir: str | Path, cfg: ExperimentConfig, seed: int = 0, augment: bool = True
    ) -> None:
        records = load_person_records(
            ann_file, image_dir, min_keypoints=cfg.data.min_keypoints, keypoints=cfg.keypoints.keypoint_set()
        )
        super().__init__(records, cfg, seed, ann_file)
        self.augment = augment

    def sample_view(self, record: PersonRecord, rng: np.random.Generator) -> View:
        view = self.base_view(record)
        if not self.augment:
            return view
        aug = self.augment_cfg
        if rng.random() < aug.half_body_prob:
            view = half_body_view(record.keypoints, rng, self.input_cfg.aspect_ratio, self.keypoints) or view
        return sample_view(view, rng, aug.scale_factor, aug.rotation, aug.rotation_prob, 0.5 if aug.flip else 0.0)

    def __getitem__(self, index: int) -> Item:
        record = self.records[index]
        rng = self.rng(index)
        view = self.sample_view(record, rng)
        size = self.input_cfg.image_size
        affine = view.affine(size)
        image = warp(read_image(record), affine, size)
        keypoints = record.keypoints.astype(np.float64)
        keypoints[:, :2] = apply_affine(keypoints[:, :2], affine)
        if view.flip:
            keypoints = keypoints[self.keypoints.flip_index]
        target, weight = gaussian_heatmaps(
            keypoints, self.input_cfg.heatmap_size, self.input_cfg.heatmap_stride, self.input_cfg.sigma
        )
        keypoints[weight == 0] = 0.0
        return {
            "image": to_tensor(image),
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(weight),
            "keypoints": torch.from_numpy(keypoints.astype(np.float32)),
            **_box(view),
            **_ids(record),
        }


class UnlabeledPairDataset(PersonCropDataset):
    """Every non-crowd person box as an easy view (mild affine) and a hard view (strong affine + photometric).

    `easy_to_hard` maps easy-crop input pixels to hard-crop input pixels, mirror included; when
    `flipped` is true a pseudo-heatmap carried across must also swap channels with the set's `flip_index`.
    Several (annotation file, image folder) sources are one dataset: the unlabeled part of the labeled
    file and the raw unlabeled images, say.
    """

    def __init__(
        self,
        ann_file: str | Path | list[tuple[Path, Path]],
        image_dir: str | Path | None,
        cfg: ExperimentConfig,
        seed: int = 0,
    ) -> None:
        sources = ann_file if isinstance(ann_file, list) else [(Path(ann_file), Path(image_dir or "."))]
        keypoints = cfg.keypoints.keypoint_set()
        records = [
            record
            for ann, images in sources
            for record in load_person_records(ann, images, min_keypoints=0, keypoints=keypoints)
        ]
        super().__init__(records, cfg, seed, sources[0][0])

    def sample_views(self, record: PersonRecord, rng: np.random.Generator) -> tuple[View, View, View]:
        """(base, easy, hard) views; both augmented views are drawn independently from the base box."""
        aug = self.augment_cfg
        base = self.base_view(record)
        easy = sample_view(base, rng, aug.easy_scale_factor, aug.easy_rotation)
        hard = sample_view(base, rng, *aug.hard_affine_ranges(), 0.5 if aug.flip else 0.0)
        return base, easy, hard

    def __getitem__(self, index: int) -> Item:
        record = self.records[index]
        rng = self.rng(index)
        base, easy, hard = self.sample_views(record, rng)
        size, aug = self.input_cfg.image_size, self.augment_cfg
        easy_affine, hard_affine = easy.affine(size), hard.affine(size)
        image = read_image(record)
        hard_pixels = warp(image, hard_affine, size).astype(np.float32) / 255.0
        hard_pixels = photometric(hard_pixels, rng, aug.color_jitter, aug.noise_std, aug.blur_prob)
        easy_to_hard = compose_affine(hard_affine, invert_affine(easy_affine))
        return {
            "easy": to_tensor(warp(image, easy_affine, size)),
            "hard": to_tensor(hard_pixels),
            "easy_to_hard": torch.from_numpy(easy_to_hard.astype(np.float32)),
            "flipped": torch.tensor(hard.flip, dtype=torch.bool),
            **_box(base),
            **_ids(record),
        }


class EvalPoseDataset(PersonCropDataset):
    """Un-augmented crops of ground-truth boxes, or of detector boxes via `from_detections`.

    Ground-truth boxes default to people with at least one labeled keypoint, as the standard
    GT-box protocol does: COCO's OKS evaluation ignores people without keypoints anyway.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        cfg: ExperimentConfig,
        seed: int = 0,
        min_keypoints: int = 1,
        records: list[PersonRecord] | None = None,
    ) -> None:
        if records is None:
            records = load_person_records(
                ann_file, image_dir, min_keypoints=min_keypoints, keypoints=cfg.keypoints.keypoint_set()
            )
        super().__init__(records, cfg, seed, ann_file)

    @classmethod
    def from_detections(
        cls,
        det_file: str | Path,
        ann_file: str | Path,
        image_dir: str | Path,
        cfg: ExperimentConfig,
        seed: int = 0,
        min_score: float = 0.0,
    ) -> EvalPoseDataset:
        """Boxes from a COCO detection-results JSON (`ann_id` -1, `score` the detector's)."""
        records = load_detection_records(
            det_file, ann_file, image_dir, min_score=min_score, keypoints=cfg.keypoints.keypoint_set()
        )
        return cls(det_file, image_dir, cfg, seed, records=records)

    def __getitem__(self, index: int) -> Item:
        record = self.records[index]
        view = self.base_view(record)
        size = self.input_cfg.image_size
        return {
            "image": to_tensor(warp(read_image(record), view.affine(size), size)),
            **_box(view),
            **_ids(record),
            "score": torch.tensor(record.score, dtype=torch.float32),
            "area": torch.tensor(record.area, dtype=torch.float32),
        }
