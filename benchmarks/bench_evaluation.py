"""Evaluation costs: heatmap decoding (argmax vs DARK), COCOeval, and inference with and without flip test.

Prints figures; asserts nothing. Run: `python benchmarks/bench_evaluation.py [--coco-mini DIR] [--device cpu]`.
Without coco-mini, the COCOeval and inference figures use stick figures drawn into a temp dir.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from components.config import ExperimentConfig
from components.data.datasets import EvalPoseDataset
from components.evaluation.coco_eval import coco_keypoint_eval, load_ground_truth
from components.evaluation.inference import predict_dataset
from components.heatmap_codec import decode_heatmaps
from components.models import build_model


def best_of(repeats: int, function: Callable[[], object]) -> float:
    """Fastest of `repeats` runs in seconds: the least disturbed by other work on a shared machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def dataset_paths(coco_mini: Path | None, scratch: Path) -> tuple[Path, Path]:
    if coco_mini is not None and (coco_mini / "annotations").is_dir():
        return coco_mini / "annotations" / "person_keypoints_val2017.json", coco_mini / "val2017"
    from tests.tiny_coco import write_coco

    coco = write_coco(scratch, num_images=64, seed=0, size=(256, 192))
    (scratch / "val.json").write_text(json.dumps(coco))
    return scratch / "val.json", scratch / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--coco-mini", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/coco-mini")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    machine = f"{platform.node()} {platform.processor() or platform.machine()}"
    print(f"machine: {machine}, torch threads {torch.get_num_threads()}, device {args.device}")

    cfg = ExperimentConfig()
    rng = np.random.default_rng(0)
    heatmaps = torch.from_numpy(rng.random((args.batch, 17, *cfg.input.heatmap_size), dtype=np.float32))
    for method in ("argmax", "dark"):
        seconds = best_of(5, lambda: decode_heatmaps(heatmaps, method))  # noqa: B023
        print(
            f"decode {method:6s}: {seconds * 1e3:7.2f} ms per batch of {args.batch} ({args.batch / seconds:,.0f} crops/s)"
        )

    with tempfile.TemporaryDirectory() as scratch:
        ann, images = dataset_paths(args.coco_mini, Path(scratch))
        gt = load_ground_truth(ann)
        people = [a for a in gt.dataset["annotations"] if a.get("num_keypoints", 0) > 0]
        results = [
            {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in people
        ]
        seconds = best_of(3, lambda: coco_keypoint_eval(gt, results))
        print(
            f"COCOeval: {seconds * 1e3:7.1f} ms for {len(results)} people on {len(gt.getImgIds())} images ({ann.name})"
        )

        cfg.eval.num_workers = 0
        dataset = EvalPoseDataset(ann, images, cfg)
        model = build_model(cfg).to(args.device).eval()
        for flip in (False, True):
            seconds = best_of(2, lambda: predict_dataset(model, dataset, cfg, flip, device=args.device))  # noqa: B023
            print(
                f"inference resnet18 {cfg.input.image_size[0]}x{cfg.input.image_size[1]} flip_test={flip!s:5s}: "
                f"{len(dataset) / seconds:7.1f} crops/s ({len(dataset)} crops, decode + back-projection included)"
            )


if __name__ == "__main__":
    main()
