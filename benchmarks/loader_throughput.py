"""Data-loader throughput: samples per second per worker for the three top-down datasets.

Usage: python benchmarks/loader_throughput.py [--data DIR] [--samples 300] [--workers 0 2] [--batch 32]
DIR has COCO's layout (annotations/person_keypoints_<split>.json, images under <split>/); the default
is ../shared/data/coco-mini (real JPEGs), else a small synthetic set made in a temporary folder.
`workers=0` decodes in the main process, which is the per-worker figure; more workers show scaling,
which on a shared machine is capped by its free cores (the load average is printed for that reason).
Indices wrap around the (small) set, so files are in the page cache: this measures decode and
augmentation, not disk reads.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from components.config import ExperimentConfig  # noqa: E402
from components.data.datasets import (  # noqa: E402
    EvalPoseDataset,
    LabeledPoseDataset,
    UnlabeledPairDataset,
    loader_worker_init,
)

COCO_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-mini"


def find_data(requested: str | None, scratch: Path) -> tuple[Path, Path, str]:
    """(annotation file, image dir, description) of the set to read."""
    if requested:
        root = Path(requested)
        ann_file = sorted((root / "annotations").glob("person_keypoints_*.json"))[0]
        return ann_file, root / ann_file.stem.removeprefix("person_keypoints_"), str(root)
    if (COCO_MINI / "annotations").is_dir():
        ann_file = COCO_MINI / "annotations" / "person_keypoints_val2017.json"
        return ann_file, COCO_MINI / "val2017", "coco-mini val2017 (real JPEGs)"
    from components.data.synthetic import generate_dataset

    generate_dataset(scratch, 40, 1, seed=0, image_size=(256, 320))
    return scratch / "annotations" / "person_keypoints_train.json", scratch / "train", "synthetic 256x320"


def measure(dataset: Dataset, samples: int, workers: int, batch: int) -> float:
    """Samples per second over `samples` items (indices wrap around), timed after the first batch
    so worker start-up is not counted."""
    indices = [i % len(dataset) for i in range(samples + batch)]
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=indices,
        num_workers=workers,
        worker_init_fn=loader_worker_init if workers else None,
    )
    batches = iter(loader)
    next(batches)
    start = time.perf_counter()
    seen = sum(len(b["image_id"]) for b in batches)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    torch.set_num_threads(1)
    cfg = ExperimentConfig()
    with tempfile.TemporaryDirectory() as scratch:
        ann_file, image_dir, description = find_data(args.data, Path(scratch))
        datasets = {
            "labeled": LabeledPoseDataset(ann_file, image_dir, cfg),
            "unlabeled pair": UnlabeledPairDataset(ann_file, image_dir, cfg),
            "eval": EvalPoseDataset(ann_file, image_dir, cfg),
        }
        print(
            f"machine: {platform.node()} {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
            f"data: {description}; input {cfg.input.image_size[0]}x{cfg.input.image_size[1]}"
        )
        for name, dataset in datasets.items():
            for workers in args.workers:
                rate = measure(dataset, args.samples, workers, args.batch)
                per_worker = rate / max(workers, 1)
                print(
                    f"{name:>15} ({len(dataset):4d} people) workers={workers}: {rate:7.1f} samples/s "
                    f"= {per_worker:6.1f} per worker"
                )


if __name__ == "__main__":
    main()
