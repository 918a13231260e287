"""Two gloo processes with half the batch each end where one process with the whole batch ends.

Batch-norm choice: plain BN normalises each rank's half batch with that half's statistics, so
with BN in training mode 2 x B/2 is a different computation from 1 x B (SyncBN would fix that,
but has no CPU kernel). The test therefore trains with `train.freeze_bn` (BN uses its running
statistics), which makes the two computations identical in exact arithmetic; what remains is
float summation order in the gradient all-reduce, hence allclose with a tight tolerance. SGD
rather than Adam keeps those last-bit differences from being amplified by Adam's normalisation.
The loop also checks, at every checkpoint, that teacher and reviewer agree bitwise on both ranks.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from components.config import ExperimentConfig
from components.data.split import SplitFiles
from components.engine.checkpoint import load_checkpoint
from components.engine.distributed import shutdown_distributed
from components.engine.trainer import train
from tests.conftest import find_free_port
from tests.tiny_coco import make_tiny_split, tiny_config

EXACT_ARITHMETIC = ["train.freeze_bn=true", "train.optimizer=sgd", "train.lr=0.01", "train.keypoint_mix.enabled=false"]


def _rank_main(rank: int, world_size: int, port: int, cfg_tree: dict[str, Any], split: dict[str, str]) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    try:
        train(
            ExperimentConfig.model_validate(cfg_tree),
            SplitFiles(**{k: Path(v) if v is not None else None for k, v in split.items()}),
            progress=False,
        )
    finally:
        shutdown_distributed()


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    split = make_tiny_split(tmp_path / "data", num_labeled=4, num_unlabeled=4, num_holdout=2)
    single = tiny_config(tmp_path / "one", "trs", EXACT_ARITHMETIC, iterations=4, batch_size=4, unlabeled_batch_size=4)
    single_state = load_checkpoint(train(single, split, progress=False).checkpoint_uri)

    double = tiny_config(tmp_path / "two", "trs", EXACT_ARITHMETIC, iterations=4, batch_size=2, unlabeled_batch_size=2)
    split_paths = {k: str(v) if v is not None else None for k, v in asdict(split).items()}
    mp.spawn(_rank_main, args=(2, find_free_port(), double.model_dump(mode="json"), split_paths), nprocs=2, join=True)
    double_state = load_checkpoint(str(tmp_path / "two" / "ckpt-00000004.pt"))

    assert len(double_state["rng"]["per_rank"]) == 2, "every rank's RNG state is saved"
    assert double_state["data_position"] == single_state["data_position"]
    compared = 0
    for part in ("student", "teacher"):
        for name, expected in single_state[part].items():
            got = double_state[part][name]
            if expected.is_floating_point():
                assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6), f"{part}.{name}"
                compared += 1
            else:
                assert torch.equal(got, expected), f"{part}.{name}"
    moved = sum(
        not torch.equal(single_state["student"][k], v)
        for k, v in load_checkpoint(str(tmp_path / "one" / "ckpt-00000002.pt"))["student"].items()
    )
    assert compared > 100 and moved > 50, "weights were compared after they actually trained"


@pytest.mark.slow
def test_ranks_stay_identical_with_batch_norm_in_training_mode(tmp_path: Path) -> None:
    """Per-rank BN statistics differ; averaging the buffers after each step keeps the replicas equal.

    The loop's checkpoint-time check (`assert_ranks_agree`) raises in a rank if its student,
    teacher or reviewer drifted, which would fail the spawn.
    """
    split = make_tiny_split(tmp_path / "data", num_labeled=4, num_unlabeled=4, num_holdout=2)
    cfg = tiny_config(tmp_path / "ckpt", "trs", iterations=2, batch_size=2, unlabeled_batch_size=2)
    assert not cfg.train.freeze_bn
    split_paths = {k: str(v) if v is not None else None for k, v in asdict(split).items()}
    mp.spawn(_rank_main, args=(2, find_free_port(), cfg.model_dump(mode="json"), split_paths), nprocs=2, join=True)
    state = load_checkpoint(str(tmp_path / "ckpt" / "ckpt-00000002.pt"))
    tracked = [v for k, v in state["student"].items() if k.endswith("num_batches_tracked")]
    assert tracked and all(int(v) == 2 for v in tracked), "BN ran in training mode"
