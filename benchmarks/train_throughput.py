"""Images per second of one supervised and one TRS training iteration, beside their FLOP ratio.

An iteration here is what the training loop does per step minus data loading: the objective
(`compute_losses`), backward, gradient clipping, the optimiser step and, for TRS, the EMA update
of the teacher. The TRS iteration carries a reviewer snapshot, MFL heads and Keypoint-Mix, as
configured. Inputs are random tensors of the configured shapes, so the figure measures compute,
not the data pipeline. FLOPs come from `torch.utils.flop_counter.FlopCounterMode` over one
iteration (forward + backward of every network that runs).

On CUDA it also reports what bounds the figure: the card's bf16 matrix-multiply peak measured in
the same process (a large square matmul), the achieved TFLOP/s as a fraction of it, and the GPU's
busy fraction (kernel time over wall time, from `torch.profiler`): a low busy fraction means the
host cannot launch kernels fast enough, a high one with a low peak fraction means small kernels.

    python benchmarks/train_throughput.py --device cpu --batch 8 --input 128x96 --iters 5
    python benchmarks/train_throughput.py --device cuda --batch 64 --backbone resnet50
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.config import ExperimentConfig, load_config  # noqa: E402
from components.engine.ema import ema_momentum, ema_update_, make_teacher  # noqa: E402
from components.engine.objective import compute_losses  # noqa: E402
from components.engine.reviewer import Reviewer  # noqa: E402
from components.engine.schedule import build_optimizer  # noqa: E402
from components.models import build_model  # noqa: E402


def make_batches(cfg: ExperimentConfig, device: torch.device, generator: torch.Generator) -> tuple[dict, dict]:
    batch, unlabeled = cfg.train.batch_size, cfg.train.unlabeled_batch_size
    height, width = cfg.input.image_size
    h, w = cfg.input.heatmap_size
    labeled_batch = {
        "image": torch.randn(batch, 3, height, width, generator=generator),
        "target": torch.rand(batch, 17, h, w, generator=generator),
        "target_weight": torch.ones(batch, 17),
    }
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(unlabeled, 2, 3).contiguous()
    unlabeled_batch = {
        "easy": torch.randn(unlabeled, 3, height, width, generator=generator),
        "hard": torch.randn(unlabeled, 3, height, width, generator=generator),
        "easy_to_hard": identity,
        "flipped": torch.zeros(unlabeled, dtype=torch.bool),
    }
    move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
    return move(labeled_batch), move(unlabeled_batch)


class Iteration:
    """One training step of `cfg.train.method`, callable repeatedly on fixed batches."""

    def __init__(self, cfg: ExperimentConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        torch.manual_seed(0)
        self.student = build_model(cfg).to(device).train()
        if cfg.train.channels_last:
            self.student = self.student.to(memory_format=torch.channels_last)
        self.teacher = make_teacher(self.student) if cfg.train.method != "supervised" else None
        self.reviewer = None
        if cfg.train.method == "trs" and cfg.train.reviewer.enabled:
            self.reviewer = Reviewer(cfg.train.reviewer, template=self.teacher)
            self.reviewer.maybe_update(self.teacher, 0.0, 0)
        self.optimizer = build_optimizer(list(self.student.parameters()), cfg.train)
        self.generator = torch.Generator().manual_seed(0)
        self.labeled, self.unlabeled = make_batches(cfg, device, torch.Generator().manual_seed(1))
        if cfg.train.method == "supervised":
            self.unlabeled = None
        self.step = cfg.train.consistency.rampup_iters  # past ramp-up: every term is on

    @property
    def images(self) -> int:
        return self.cfg.train.batch_size + (self.cfg.train.unlabeled_batch_size if self.unlabeled else 0)

    def __call__(self) -> None:
        amp = self.cfg.train.amp and self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            losses = compute_losses(
                self.cfg.train.method, self.student, self.teacher, self.reviewer, self.labeled, self.unlabeled,
                self.cfg, self.step, self.generator,
            )
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if self.cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.cfg.train.grad_clip)
        self.optimizer.step()
        if self.teacher is not None:
            ema_update_(self.teacher, self.student, ema_momentum(self.step, 0.999, 0))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16_matmul_peak_tflops(device: torch.device, size: int = 8192, repeats: int = 10) -> float:
    """Achieved TFLOP/s of a large bf16 matmul on `device`: the practical ceiling for the FLOP figures."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def gpu_busy_fraction(step: Iteration, iters: int) -> float:
    """Sum of CUDA kernel durations over the wall time of `iters` profiled iterations (one stream)."""
    from torch.profiler import ProfilerActivity, profile

    synchronize(step.device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(iters):
            step()
        synchronize(step.device)
        wall_us = (time.perf_counter() - start) * 1e6
    kernel_us = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type.name == "CUDA")
    return kernel_us / wall_us


def measure(cfgs: dict[str, ExperimentConfig], device: torch.device, warmup: int, iters: int, rounds: int) -> dict[str, dict]:
    """Per method: FLOPs of one iteration and the best of `rounds` timings of `iters` iterations.

    Rounds alternate between the methods so a busy machine slows both alike; the minimum is the
    least disturbed estimate.
    """
    steps = {method: Iteration(cfg, device) for method, cfg in cfgs.items()}
    flops = {}
    for method, step in steps.items():
        with FlopCounterMode(display=False) as counter:
            step()
        flops[method] = counter.get_total_flops()
        for _ in range(warmup):
            step()
    best = {method: float("inf") for method in steps}
    for _ in range(rounds):
        for method, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(iters):
                step()
            synchronize(device)
            best[method] = min(best[method], (time.perf_counter() - start) / iters)
    results = {
        method: {
            "images_per_iter": step.images,
            "s_per_iter": best[method],
            "iters_per_s": 1.0 / best[method],
            "images_per_s": step.images / best[method],
            "gflops_per_iter": flops[method] / 1e9,
            "achieved_tflops": flops[method] / best[method] / 1e12,
        }
        for method, step in steps.items()
    }
    if device.type == "cuda":
        for method, step in steps.items():
            results[method]["gpu_busy_fraction"] = gpu_busy_fraction(step, iters)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="Experiment YAML; the flags below override it.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Config override (repeatable).")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--backbone", default=None, help="timm backbone [default: the config's]")
    parser.add_argument("--batch", type=int, default=None, help="labeled = unlabeled crops per iteration")
    parser.add_argument("--input", default=None, help="network input HxW, e.g. 256x192")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the best counts")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    overrides = list(args.overrides)
    if args.backbone:
        overrides.append(f"model.backbone={args.backbone}")
    if args.batch:
        overrides += [f"train.batch_size={args.batch}", f"train.unlabeled_batch_size={args.batch}"]
    if args.input:
        height, width = (int(v) for v in args.input.lower().split("x"))
        overrides.append(f"input.image_size=[{height}, {width}]")
    base = load_config(args.config, overrides)
    cfgs = {
        method: base.model_copy(update={"train": base.train.model_copy(update={"method": method})})
        for method in ("supervised", "trs")
    }
    results = measure(cfgs, device, args.warmup, args.iters, args.rounds)
    sup, trs = results["supervised"], results["trs"]
    peak = bf16_matmul_peak_tflops(device) if device.type == "cuda" else None
    report = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "amp_bf16": base.train.amp and device.type == "cuda",
        "channels_last": base.train.channels_last,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "backbone": base.model.backbone,
        "input": list(base.input.image_size),
        "batch": base.train.batch_size,
        "unlabeled_batch": base.train.unlabeled_batch_size,
        "rounds": args.rounds,
        "results": results,
        "time_ratio_trs_over_supervised": trs["s_per_iter"] / sup["s_per_iter"],
        "flop_ratio_trs_over_supervised": trs["gflops_per_iter"] / sup["gflops_per_iter"],
        "bf16_matmul_peak_tflops": peak,
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return report
    print(f"device {report['device']} ({report['threads']} threads), {report['backbone']}, input "
          f"{base.input.image_size[0]}x{base.input.image_size[1]}, batch {base.train.batch_size} labeled"
          f" + {base.train.unlabeled_batch_size} unlabeled (TRS), best of {args.rounds} rounds of {args.iters}\n")
    print("| iteration | images/iter | s/iter | images/s | GFLOP/iter | TFLOP/s | of bf16 peak | GPU busy |")
    print("|---|---|---|---|---|---|---|---|")
    for method, row in results.items():
        of_peak = f"{row['achieved_tflops'] / peak:.1%}" if peak else ""
        busy = f"{row['gpu_busy_fraction']:.0%}" if "gpu_busy_fraction" in row else ""
        print(f"| {method} | {row['images_per_iter']} | {row['s_per_iter']:.4f} | {row['images_per_s']:.1f} | "
              f"{row['gflops_per_iter']:.1f} | {row['achieved_tflops']:.2f} | {of_peak} | {busy} |")
    if peak:
        print(f"\nbf16 matmul peak measured in this run: {peak:.0f} TFLOP/s")
    print(f"\nTRS / supervised: time per iteration x{report['time_ratio_trs_over_supervised']:.2f}, "
          f"FLOPs per iteration x{report['flop_ratio_trs_over_supervised']:.2f}")
    return report


if __name__ == "__main__":
    main()
