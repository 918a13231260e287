"""`train.data_path: gpu`: the loader workers read JPEG bytes, the training device makes the batches.

Same samplers, same people per step and same checkpoint positions as the CPU `Streams`; only the
work after reading a file moves: `DeviceBatchMaker` decodes (nvJPEG on CUDA), draws the views,
warps, jitters, blurs and builds targets for the whole batch on the device.

Its random draws come from one `torch.Generator` on the device per stream, re-seeded before every
batch from (train.seed, stream, rank, batch index). The draws of a step are therefore a pure
function of the step, like the CPU path's per-item generators: a resumed run makes bitwise the
batches of one that never stopped, with no generator state to carry in the checkpoint, and a
loader that reads ahead changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np
import torch

from components.config import ExperimentConfig
from components.data.device_pipeline import Batch, DeviceBatchMaker
from components.data.jpeg_bytes import JpegBytesDataset, collate_jpegs
from components.data.split import SplitFiles
from components.engine.batches import IMAGE_KEYS, LabeledBatch, UnlabeledBatch
from components.engine.distributed import DistributedContext
from components.engine.sampling import StreamBatchSampler
from components.engine.streams import Streams, batch_stream
from components.method import MethodSpec

LABELED, UNLABELED = 0, 1


def batch_seed(seed: int, stream: int, rank: int, batch: int) -> int:
    """A 63-bit seed for the device generator of one batch, well mixed from its coordinates."""
    return int(np.random.SeedSequence([seed, stream, rank, batch]).generate_state(1, np.uint64)[0] >> 1)


class DeviceStreams(Streams):
    """The `BatchStreams` of the GPU data path; positions and resume checks are the CPU streams'."""

    def __init__(
        self, cfg: ExperimentConfig, spec: MethodSpec, split: SplitFiles, ctx: DistributedContext, start_step: int
    ) -> None:
        tcfg = cfg.train
        self.spec, self.ctx, self.channels_last = spec, ctx, tcfg.channels_last
        self.seed, self.start_step = tcfg.seed, start_step
        self.maker = DeviceBatchMaker(cfg, ctx.device)
        self.generator = torch.Generator(ctx.device)
        keypoints = cfg.keypoints.keypoint_set()
        labeled = JpegBytesDataset.from_annotations(
            split.labeled_ann, split.train_images, cfg.data.min_keypoints, keypoints
        )
        self.labeled_sampler, self.labeled = batch_stream(
            labeled, tcfg.batch_size, cfg, ctx, start_step, stream=LABELED, collate_fn=collate_jpegs
        )
        self.unlabeled_sampler: StreamBatchSampler | None = None
        self.unlabeled: Iterator[dict[str, Any]] | None = None
        if spec.uses_unlabeled:
            unlabeled = JpegBytesDataset.from_annotations(split.unlabeled_sources(), None, 0, keypoints)
            self.unlabeled_sampler, self.unlabeled = batch_stream(
                unlabeled,
                tcfg.unlabeled_batch_size,
                cfg,
                ctx,
                self._unlabeled_batches(start_step),
                stream=UNLABELED,
                collate_fn=collate_jpegs,
            )

    def _make(self, make: Callable[[Batch, torch.Generator], Batch], raw: Batch, stream: int, batch: int) -> Batch:
        self.generator.manual_seed(batch_seed(self.seed, stream, self.ctx.rank, batch))
        out = make(raw, self.generator)
        if self.channels_last:
            for key in IMAGE_KEYS:
                if key in out:
                    out[key] = out[key].contiguous(memory_format=torch.channels_last)
        return out

    def next(self, step: int) -> tuple[LabeledBatch, UnlabeledBatch | None]:
        """The batches of `step`, made on the device; no unlabeled batch for supervised runs or in the burn-in."""
        labeled = self._make(self.maker.labeled, next(self.labeled), LABELED, step)
        if self.unlabeled is None or self.spec.in_burn_in(step):
            return cast(LabeledBatch, labeled), None
        unlabeled = self._make(self.maker.unlabeled, next(self.unlabeled), UNLABELED, self._unlabeled_batches(step))
        return cast(LabeledBatch, labeled), cast(UnlabeledBatch, unlabeled)


def build_streams(
    cfg: ExperimentConfig, spec: MethodSpec, split: SplitFiles, ctx: DistributedContext, start_step: int
) -> Streams:
    """The data path `train.data_path` names."""
    kind = DeviceStreams if cfg.train.data_path == "gpu" else Streams
    return kind(cfg, spec, split, ctx, start_step)
