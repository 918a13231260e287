"""Deterministic, infinite, resumable sampling of dataset items, sharded across ranks.

Training is counted in iterations, not epochs, and the labeled set is often smaller than one batch,
so every dataset is read as one endless stream: epoch after epoch, each a permutation drawn from
`(seed, stream, epoch)`. Global batch `k` is stream positions `[k * G, (k + 1) * G)` for global batch size
`G`; rank `r` of `W` takes the `r`-th contiguous slice of it. Hence the items a step sees depend only
on (seed, step), never on worker count, world size or where a run was resumed, and W processes
with batch `G / W` see exactly what one process with batch `G` sees.

Items are yielded as `(epoch, index)` pairs; `EpochIndexed` forwards the epoch to the dataset's
`set_epoch` before reading, so per-item randomness `(seed, epoch, index)` survives DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Sampler


@dataclass(frozen=True)
class DataPosition:
    """Where the stream stands: the next item to read is `index` of epoch `epoch`'s permutation."""

    epoch: int
    index: int

    def as_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}


def epoch_permutation(size: int, seed: int, epoch: int, stream: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, stream, epoch]).permutation(size)


class StreamBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless batches of `(epoch, index)` for this rank, starting at global batch `start_batch`.

    `stream` tells apart streams of one run drawn with the same seed (labeled, unlabeled).
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        seed: int,
        stream: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        if dataset_size < 1:
            raise ValueError("cannot sample from an empty dataset")
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler shape: batch_size={batch_size}, rank={rank}, world_size={world_size}")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.stream = stream
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def position_after(self, batches: int) -> DataPosition:
        """The stream position once `batches` global batches have been consumed."""
        offset = batches * self.global_batch_size
        return DataPosition(epoch=offset // self.dataset_size, index=offset % self.dataset_size)

    def batch_for_position(self, position: DataPosition) -> int:
        """Inverse of `position_after`; refuses positions that are not on a batch boundary."""
        offset = position.epoch * self.dataset_size + position.index
        if offset % self.global_batch_size:
            raise ValueError(
                f"data position {position} is not on a boundary of global batch {self.global_batch_size}; "
                "was the run resumed with another batch size or world size?"
            )
        return offset // self.global_batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        offset = self.start_batch * self.global_batch_size + self.rank * self.batch_size
        stride = self.global_batch_size
        cached_epoch, permutation = -1, np.empty(0, dtype=np.int64)
        while True:
            batch: list[tuple[int, int]] = []
            for position in range(offset, offset + self.batch_size):
                epoch, index = divmod(position, self.dataset_size)
                if epoch != cached_epoch:
                    cached_epoch, permutation = (
                        epoch,
                        epoch_permutation(self.dataset_size, self.seed, epoch, self.stream),
                    )
                batch.append((epoch, int(permutation[index])))
            yield batch
            offset += stride

    def __len__(self) -> int:
        raise TypeError("a StreamBatchSampler is endless")


class EpochIndexed(Dataset):
    """Reads `(epoch, index)` keys: sets the wrapped dataset's epoch, then returns its item."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]
