"""The data streams of one rank: endless, resumable batch iterators, moved to the training device.

`Streams` is what the loop asks for each step's batches (`next(step)`) and what a checkpoint asks
where the data stands (`positions(step)`). The labeled stream advances every step; the unlabeled
one exists when the method has a teacher and advances only after the burn-in: its batch index is
the step minus the spec's `burn_in_end`. Another data path (e.g. one that augments on the device)
plugs in by giving the same three methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar, cast

import torch
from torch.utils.data import DataLoader, Dataset

from components.config import ExperimentConfig
from components.data.datasets import LabeledPoseDataset, UnlabeledPairDataset, loader_worker_init
from components.data.split import SplitFiles
from components.engine.batches import IMAGE_KEYS, LabeledBatch, UnlabeledBatch
from components.engine.checkpoint import ResumeError
from components.engine.distributed import DistributedContext
from components.engine.sampling import DataPosition, EpochIndexed, StreamBatchSampler
from components.method import MethodSpec

Batch = TypeVar("Batch", bound=Mapping[str, Any])


class BatchStreams(Protocol):
    """What the training loop needs from a data path."""

    def next(self, step: int) -> tuple[LabeledBatch, UnlabeledBatch | None]: ...

    def positions(self, step: int) -> dict[str, dict[str, int]]: ...

    def check_resumes_at(self, saved: dict[str, dict[str, int]], step: int, uri: str) -> None: ...


def batch_stream(
    dataset: Dataset[Any],
    batch_size: int,
    cfg: ExperimentConfig,
    ctx: DistributedContext,
    start_batch: int,
    stream: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> tuple[StreamBatchSampler, Iterator[dict[str, Any]]]:
    """An endless loader over `dataset` from global batch `start_batch`, this rank's slice of each batch.

    `collate_fn` replaces the default stacking (e.g. for items of unequal size such as file bytes).
    """
    sampler = StreamBatchSampler(
        len(dataset),  # type: ignore[arg-type]
        batch_size,
        seed=cfg.train.seed,
        stream=stream,
        rank=ctx.rank,
        world_size=ctx.world_size,
        start_batch=start_batch,
    )
    workers = cfg.train.num_workers
    loader = DataLoader(
        EpochIndexed(dataset),
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda",
        worker_init_fn=loader_worker_init,
        generator=torch.Generator().manual_seed(cfg.train.seed * 1000 + stream),  # worker seeds only
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
        collate_fn=collate_fn,
    )
    return sampler, iter(loader)


def to_device(batch: Batch, device: torch.device, channels_last: bool) -> Batch:
    """Tensors moved (asynchronously from pinned memory), images in channels-last when asked; other values kept."""
    moved: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and key in IMAGE_KEYS and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        moved[key] = value
    return cast(Batch, moved)


class Streams:
    """The loader streams: labeled crops, and the unlabeled easy/hard pairs when the method has a teacher."""

    def __init__(
        self, cfg: ExperimentConfig, spec: MethodSpec, split: SplitFiles, ctx: DistributedContext, start_step: int
    ) -> None:
        tcfg = cfg.train
        self.spec, self.ctx, self.channels_last = spec, ctx, tcfg.channels_last
        labeled = LabeledPoseDataset(split.labeled_ann, split.train_images, cfg, tcfg.seed)
        self.labeled_sampler, self.labeled = batch_stream(labeled, tcfg.batch_size, cfg, ctx, start_step, stream=0)
        self.unlabeled_sampler: StreamBatchSampler | None = None
        self.unlabeled: Iterator[dict[str, Any]] | None = None
        if spec.uses_unlabeled:
            unlabeled = UnlabeledPairDataset(split.unlabeled_sources(), None, cfg, tcfg.seed)
            self.unlabeled_sampler, self.unlabeled = batch_stream(
                unlabeled, tcfg.unlabeled_batch_size, cfg, ctx, self._unlabeled_batches(start_step), stream=1
            )

    def _unlabeled_batches(self, steps: int) -> int:
        return max(0, steps - self.spec.burn_in_end)

    def next(self, step: int) -> tuple[LabeledBatch, UnlabeledBatch | None]:
        """The batches of `step`; no unlabeled batch for supervised runs or in the burn-in."""
        labeled = to_device(cast(LabeledBatch, next(self.labeled)), self.ctx.device, self.channels_last)
        if self.unlabeled is None or self.spec.in_burn_in(step):
            return labeled, None
        unlabeled = to_device(cast(UnlabeledBatch, next(self.unlabeled)), self.ctx.device, self.channels_last)
        return labeled, unlabeled

    def positions(self, step: int) -> dict[str, dict[str, int]]:
        """Where each stream stands after `step` steps (what a checkpoint records)."""
        positions = {"labeled": self.labeled_sampler.position_after(step).as_dict()}
        if self.unlabeled_sampler is not None:
            positions["unlabeled"] = self.unlabeled_sampler.position_after(self._unlabeled_batches(step)).as_dict()
        return positions

    def check_resumes_at(self, saved: dict[str, dict[str, int]], step: int, uri: str) -> None:
        expected = {"labeled": step, "unlabeled": self._unlabeled_batches(step)}
        for name, sampler in (("labeled", self.labeled_sampler), ("unlabeled", self.unlabeled_sampler)):
            if sampler is None or name not in saved:
                continue
            if sampler.batch_for_position(DataPosition(**saved[name])) != expected[name]:
                raise ResumeError(f"{uri}: {name} data position {saved[name]} does not match step {step}")
