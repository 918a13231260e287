"""Serving cost of the whole predictor (crop, network, decoding in one call): people per second and
latency at batch 1 and 16 people an image, in eager PyTorch and in ONNX Runtime, on the CPU.

Models: the demo's (configs/demo.yaml: resnet10t + FPN at 128x96) and resnet50 + deconvolution head
at 256x192 (SimpleBaseline's), both randomly initialised: cost does not depend on the weights.
Prints a markdown table; asserts nothing. Each figure is the median of `--repeats` timed calls after
two warm-up calls (the median, not the best: a serving latency, on a machine others may share).

    python benchmarks/inference.py [--models demo resnet50] [--batches 1 16] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from components.config import ExperimentConfig, load_config
from components.models import build_model
from components.serving.onnx_export import export_onnx
from components.serving.predictor import TopDownPredictor
from components.serving.runtime import KeypointRuntime, OnnxRuntime, TorchRuntime

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "demo": (str(REPO / "configs" / "demo.yaml"), []),
    "resnet50": (None, ["model.backbone=resnet50", "input.image_size=[256, 192]", "input.heatmap_stride=4"]),
}
IMAGE_SIZE = (480, 640)  # (H, W) of the picture the people are cropped from


def people_boxes(count: int, rng: np.random.Generator) -> np.ndarray:
    height, width = IMAGE_SIZE
    sizes = rng.uniform([40, 90], [160, 380], size=(count, 2))
    corners = rng.uniform(0, 1, size=(count, 2)) * (np.array([width, height]) - sizes)
    return np.concatenate([corners, sizes], axis=1).astype(np.float32)


def time_calls(runtime: KeypointRuntime, image: np.ndarray, boxes: np.ndarray, repeats: int) -> float:
    """Median seconds of one call, after two warm-up calls."""
    for _ in range(2):
        runtime(image, boxes)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runtime(image, boxes)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def config_of(name: str) -> ExperimentConfig:
    path, overrides = MODELS[name]
    return load_config(path, overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["demo", "resnet50"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for both runtimes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*IMAGE_SIZE, 3), dtype=np.uint8)
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, torch {torch.__version__}, image {IMAGE_SIZE[1]}x{IMAGE_SIZE[0]}"
    )
    print("| model | input | runtime | people/call | latency (ms) | people/s |")
    print("|---|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            cfg = config_of(name)
            torch.manual_seed(0)
            network = build_model(cfg).eval()
            started = time.perf_counter()
            onnx_path = export_onnx(network, cfg, Path(scratch) / f"{name}.onnx")
            export_s = time.perf_counter() - started
            runtimes: dict[str, KeypointRuntime] = {
                "PyTorch eager": TorchRuntime(TopDownPredictor(network, cfg)),
                "ONNX Runtime": OnnxRuntime(onnx_path, threads=args.threads),
            }
            size = "x".join(str(v) for v in cfg.input.image_size)
            for batch in args.batches:
                boxes = people_boxes(batch, rng)
                for runtime_name, runtime in runtimes.items():
                    seconds = time_calls(runtime, image, boxes, args.repeats)
                    print(
                        f"| {name} ({cfg.model.backbone}) | {size} | {runtime_name} | {batch} | "
                        f"{seconds * 1000:.1f} | {batch / seconds:.1f} |",
                        flush=True,
                    )
            print(f"<!-- {name}: ONNX export took {export_s:.1f} s -->", flush=True)


if __name__ == "__main__":
    main()
