"""Checkpoints: atomic writes, the `latest` pointer, pruning, S3 round trip, and the pieces resume relies on."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from components import atomic_files
from components.config import TrainConfig
from components.engine import checkpoint as ckpt
from components.engine.sampling import DataPosition, EpochIndexed, StreamBatchSampler
from components.engine.schedule import lr_factor


def _state(step: int) -> dict[str, Any]:
    return {"step": step, "student": {"w": torch.full((2, 2), float(step))}, "config": {"name": "t"}}


def test_save_points_latest_at_newest_and_prunes(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        uri = ckpt.save_checkpoint(_state(step), tmp_path, step)
        ckpt.prune_checkpoints(tmp_path, keep_last=2)
    assert ckpt.latest_checkpoint(tmp_path) == uri
    assert [step for step, _ in ckpt.list_checkpoints(tmp_path)] == [4, 6]
    assert torch.equal(ckpt.load_checkpoint(uri)["student"]["w"], torch.full((2, 2), 6.0))
    assert not list(tmp_path.glob("*.tmp")), "temporary files must not survive a save"


def test_latest_falls_back_to_newest_file_without_pointer(tmp_path: Path) -> None:
    assert ckpt.latest_checkpoint(tmp_path / "absent") is None
    ckpt.save_checkpoint(_state(3), tmp_path, 3)
    ckpt.save_checkpoint(_state(10), tmp_path, 10)
    (tmp_path / ckpt.LATEST).unlink()
    assert ckpt.latest_checkpoint(tmp_path) == str(tmp_path / ckpt.checkpoint_name(10))


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = ckpt.save_checkpoint(_state(1), tmp_path, 1)

    monkeypatch.setattr(atomic_files.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        ckpt.save_checkpoint(_state(2), tmp_path, 2)
    assert ckpt.latest_checkpoint(tmp_path) == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.checkpoint_name(1), ckpt.LATEST]


def test_unreadable_checkpoint_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / ckpt.checkpoint_name(5)
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=str(bad)):
        ckpt.load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


class FakeS3:
    """Just the calls checkpoint.py makes, over a dict; records the order objects were written."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.writes: list[str] = []

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.objects[(Bucket, Key)] = bytes(Body)
        self.writes.append(Key)

    def upload_fileobj(self, Fileobj: io.BytesIO, Bucket: str, Key: str) -> None:
        self.put_object(Bucket, Key, Fileobj.read())

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}

    def head_object(self, Bucket: str, Key: str) -> None:
        if (Bucket, Key) not in self.objects:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")

    def delete_object(self, Bucket: str, Key: str) -> None:
        del self.objects[(Bucket, Key)]

    def list_objects_v2(self, Bucket: str, Prefix: str) -> dict[str, Any]:
        keys = sorted(k for b, k in self.objects if b == Bucket and k.startswith(Prefix))
        return {"Contents": [{"Key": k} for k in keys], "IsTruncated": False}


def test_s3_uploads_object_before_pointer_and_round_trips() -> None:
    client = FakeS3()
    root = "s3://bucket/runs/a"
    assert ckpt.latest_checkpoint(root, client) is None
    for step in (5, 10, 15):
        uri = ckpt.save_checkpoint(_state(step), root, step, client)
    assert client.writes[-2:] == [f"runs/a/{ckpt.checkpoint_name(15)}", "runs/a/latest"]
    assert ckpt.latest_checkpoint(root, client) == uri == f"s3://bucket/runs/a/{ckpt.checkpoint_name(15)}"
    assert ckpt.load_checkpoint(uri, client)["step"] == 15
    removed = ckpt.prune_checkpoints(root, keep_last=1, client=client)
    assert len(removed) == 2 and [s for s, _ in ckpt.list_checkpoints(root, client)] == [15]


def test_stream_is_a_function_of_step_and_shards_the_global_batch() -> None:
    whole = iter(StreamBatchSampler(7, 4, seed=3))
    batches = [next(whole) for _ in range(6)]
    flat = [key for batch in batches for key in batch]
    for epoch in range(3):
        assert sorted(i for e, i in flat if e == epoch) == list(range(7)), "each epoch is a permutation"
    resumed = iter(StreamBatchSampler(7, 4, seed=3, start_batch=4))
    assert [next(resumed) for _ in range(2)] == batches[4:]
    ranks = [iter(StreamBatchSampler(7, 2, seed=3, rank=r, world_size=2)) for r in range(2)]
    for batch in batches:
        assert next(ranks[0]) + next(ranks[1]) == batch
    for other in (StreamBatchSampler(7, 4, seed=4), StreamBatchSampler(7, 4, seed=3, stream=1)):
        stream = iter(other)
        assert [next(stream) for _ in range(6)] != batches


def test_data_position_round_trip_and_mismatch() -> None:
    sampler = StreamBatchSampler(10, 3, seed=0, world_size=2)
    position = sampler.position_after(4)
    assert position == DataPosition(epoch=2, index=4)
    assert sampler.batch_for_position(position) == 4
    with pytest.raises(ValueError, match="boundary"):
        sampler.batch_for_position(DataPosition(epoch=0, index=5))


def test_epoch_indexed_forwards_epoch() -> None:
    class Recorder:
        epoch = -1

        def __len__(self) -> int:
            return 3

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __getitem__(self, index: int) -> tuple[int, int]:
            return self.epoch, index

    assert EpochIndexed(Recorder())[(5, 2)] == (5, 2)


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_lr_schedule_warms_up_then_decays(schedule: str) -> None:
    cfg = TrainConfig(iterations=100, warmup_iters=10, schedule=schedule, step_milestones=(0.5, 0.8))
    factors = np.array([lr_factor(step, cfg) for step in range(100)])
    assert np.all(np.diff(factors[:10]) > 0) and factors[9] == pytest.approx(1.0)
    assert np.all(np.diff(factors[10:]) <= 1e-12), "no increase after warm-up"
    assert factors[-1] < 0.05
    if schedule == "step":
        assert factors[49] == pytest.approx(1.0) and factors[50] == pytest.approx(0.1)
        assert factors[80] == pytest.approx(0.01)
