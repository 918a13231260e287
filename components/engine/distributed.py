"""Data-parallel plumbing for `torchrun`: process group, DDP wrapping, and keeping ranks identical.

One process per device; `torchrun` sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT. Gloo on
the CPU, NCCL on GPUs. A single process without those variables runs undistributed with the same
code path. Every rank keeps its own teacher and reviewer; they stay identical because the student's
parameters are identical after each DDP step and its buffers are averaged (`average_buffers_`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto` picks this rank's GPU when there is one, else the CPU; anything else is taken as given."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(preference)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_distributed(device_preference: str = "auto") -> DistributedContext:
    """Join the process group `torchrun` describes (if any) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_data_parallel(model: nn.Module, ctx: DistributedContext, sync_bn: bool) -> nn.Module:
    """DDP around the student when distributed; SyncBN on GPUs when asked (gloo has no SyncBN kernel).

    Buffers are not broadcast from rank 0 at each forward; `average_buffers_` reconciles them after
    each step instead, so teachers built from the student's buffers agree on every rank.
    """
    if not ctx.distributed:
        return model
    if sync_bn and ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def average_buffers_(model: nn.Module, ctx: DistributedContext) -> None:
    """Average floating-point buffers (BN running statistics) across ranks, in place."""
    if not ctx.distributed:
        return
    for buffer in unwrap(model).buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(ctx.world_size)


def broadcast_value(value: Any, ctx: DistributedContext, source: int = 0) -> Any:
    """Rank `source`'s Python value on every rank (e.g. the reviewer score computed once)."""
    if not ctx.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]


def gather_values(value: Any, ctx: DistributedContext) -> list[Any]:
    """Every rank's Python value, in rank order, on every rank (e.g. per-rank RNG states)."""
    if not ctx.distributed:
        return [value]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(ctx: DistributedContext) -> None:
    if ctx.distributed:
        dist.barrier()


@torch.no_grad()
def assert_ranks_agree(modules: dict[str, nn.Module | None], ctx: DistributedContext) -> None:
    """Fail loudly if any rank's copy of these modules drifted (e.g. a teacher built from unsynced buffers).

    Compares one float64 checksum per module, so it is cheap enough to run at every checkpoint.
    """
    if not ctx.distributed:
        return
    present = {name: unwrap(module) for name, module in modules.items() if module is not None}
    names = list(present)
    checksums = torch.tensor(
        [sum((float(t.double().sum()) for t in (*m.parameters(), *m.buffers())), 0.0) for m in present.values()],
        dtype=torch.float64,
    )
    gathered = gather_values(checksums, ctx)
    for rank, other in enumerate(gathered):
        if not torch.equal(other, checksums):
            drifted = [n for n, a, b in zip(names, checksums, other) if a != b]
            raise RuntimeError(f"rank {rank} disagrees with rank {ctx.rank} on {drifted}: replicas drifted apart")
