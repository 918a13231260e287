"""Training throughput per backbone, method and feed, in one process: how busy the iteration keeps the device.

An iteration is what the training loop does per step: fetch the step's batches from a feed, the
objective (`compute_losses`), backward, gradient clipping, the optimiser step and, for TRS, the EMA
update of the teacher (TRS carries a reviewer snapshot, MFL heads and Keypoint-Mix as configured;
trs_multiaug adds MultiAugs' two hard paths, `augment.hard_recipe=[joco, jccm]`, drawn on the device).
The feeds:

    on_gpu      fixed random batches already on the device: compute alone, no data loading
    cpu_loader  the trainer's CPU data path on real JPEGs: loader workers decode, warp, augment and
                build targets (train.data_path=cpu), as many workers in all as the machine has cores
    gpu_jpeg    the trainer's GPU data path on the same JPEGs: workers read bytes, the device
                decodes them in batches and augments (train.data_path=gpu)

The JPEGs are a COCO keypoint file's (coco-mini's by default); the stream samplers repeat its
people to fill the batches. FLOPs come from `torch.utils.flop_counter.FlopCounterMode` over one
eager on_gpu iteration (the networks' forward and backward; the data path's work is not counted).
TFLOP/s is those FLOPs over the measured time, `fraction_of_peak` divides it by a bf16 matmul's
TFLOP/s measured in the same process, and `busy` is the device's kernel time over the wall time
(from `torch.profiler`; null on a CPU).

    python benchmarks/train_throughput.py --device cuda --backbones resnet50,hrnet_w32 --batch 64 --input 256x192 \\
        --coco-root .gpu_data/data/coco-mini --json-out docs/figures/gpu_throughput.json --docs docs/benchmarks.md
    python benchmarks/train_throughput.py --device cpu --backbones resnet10t --input 64x48 --batch 2 \\
        --iters 1 --rounds 1 --warmup 0 --workers 0 --coco-ann ANN --coco-images DIR --json-out /tmp/t.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ssl_gain import MULTIAUG  # noqa: E402
from components.atomic_files import write_atomically  # noqa: E402
from components.config import CompileConfig, ExperimentConfig, load_config  # noqa: E402
from components.data.split import SplitFiles, coco_layout  # noqa: E402
from components.engine.batches import LabeledBatch, UnlabeledBatch  # noqa: E402
from components.engine.compile import InferenceRunners, student_runner  # noqa: E402
from components.engine.device_streams import build_streams  # noqa: E402
from components.engine.distributed import DistributedContext  # noqa: E402
from components.engine.ema import ema_update_, make_teacher  # noqa: E402
from components.engine.objective import compute_losses  # noqa: E402
from components.engine.reviewer import Reviewer  # noqa: E402
from components.engine.schedule import build_optimizer  # noqa: E402
from components.method import method_spec  # noqa: E402
from components.models import build_model  # noqa: E402

FEEDS = ("on_gpu", "cpu_loader", "gpu_jpeg")
# the rows' methods, as config overrides; trs_multiaug is TRS with MultiAugs' two hard paths (ssl_gain.py)
METHODS: dict[str, list[str]] = {
    "supervised": ["train.method=supervised"],
    "trs": ["train.method=trs"],
    "trs_multiaug": ["train.method=trs", *MULTIAUG],
}
RUN_KEYS = ("backbone", "method", "feed", "ms_per_iter", "crops_per_s", "tflops", "fraction_of_peak", "busy")
DOCS_START, DOCS_END = "<!-- gpu_throughput:start -->", "<!-- gpu_throughput:end -->"
Batches = tuple[LabeledBatch, UnlabeledBatch | None]
Feed = Callable[[int], Batches]


def random_batches(cfg: ExperimentConfig, device: torch.device) -> tuple[LabeledBatch, UnlabeledBatch]:
    """Fixed labeled and unlabeled batches of the configured shapes, drawn once (the on_gpu feed)."""
    generator = torch.Generator().manual_seed(1)
    batch, unlabeled = cfg.train.batch_size, cfg.train.unlabeled_batch_size
    height, width = cfg.input.image_size
    h, w = cfg.input.heatmap_size
    memory = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
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

    def move(batch_: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {k: (v.to(device, memory_format=memory) if v.dim() == 4 else v.to(device)) for k, v in batch_.items()}

    return cast(LabeledBatch, move(labeled_batch)), cast(UnlabeledBatch, move(unlabeled_batch))


class Iteration:
    """One training step of `cfg.train.method` on the batches a feed gives, callable repeatedly."""

    def __init__(self, cfg: ExperimentConfig, device: torch.device) -> None:
        self.cfg, self.device, self.spec = cfg, device, method_spec(cfg)
        torch.manual_seed(0)
        self.student = build_model(cfg).to(device).train()
        if cfg.train.channels_last:
            self.student = self.student.to(memory_format=torch.channels_last)
        self.teacher = make_teacher(self.student) if self.spec.has_teacher else None
        runners = InferenceRunners(cfg.train.compile)
        self.reviewer = None
        if self.spec.has_reviewer and self.teacher is not None:
            self.reviewer = Reviewer(cfg.train.reviewer, template=self.teacher, runner=runners)
            self.reviewer.maybe_update(self.teacher, 0.0, 0)
        self.network = student_runner(self.student, cfg.train.compile)
        self.teacher_forward = runners(self.teacher) if self.teacher is not None else None
        self.optimizer = build_optimizer(list(self.student.parameters()), cfg.train)
        self.generator = torch.Generator().manual_seed(0)
        self.step = max(cfg.train.consistency.rampup_iters, cfg.train.consistency.burn_in_iters)  # every term on

    def __call__(self, batches: Batches) -> int:
        """Train on `batches`; returns the crops it used."""
        labeled, unlabeled = batches
        amp = self.cfg.train.amp and self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            losses = compute_losses(
                self.spec,
                self.network,
                self.teacher_forward,
                self.reviewer,
                labeled,
                unlabeled,
                self.cfg,
                self.step,
                self.generator,
            )
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if self.cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.cfg.train.grad_clip)
        self.optimizer.step()
        if self.teacher is not None:
            ema_update_(self.teacher, self.student, self.cfg.train.ema.momentum)
        return labeled["image"].shape[0] + (unlabeled["easy"].shape[0] if unlabeled is not None else 0)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16_matmul_peak_tflops(device: torch.device, size: int, repeats: int = 10) -> float:
    """TFLOP/s of a large square bf16 matmul on `device`: the practical ceiling for the FLOP figures."""
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


def iteration_flops(step: Iteration, batches: Batches) -> int:
    with FlopCounterMode(display=False) as counter:
        step(batches)
    return counter.get_total_flops()


def coco_split(ann: Path, images: Path) -> SplitFiles:
    """The JPEG feeds' data: the file's people serve as the labeled and (labels ignored) the unlabeled stream."""
    return SplitFiles(
        labeled_ann=ann,
        unlabeled_ann=ann,
        holdout_ann=ann,
        train_images=images,
        val_ann=ann,
        val_images=images,
        manifest=ann,
    )


@contextlib.contextmanager
def feed_of(name: str, cfg: ExperimentConfig, device: torch.device, split: SplitFiles) -> Iterator[Feed]:
    """The step -> batches function of feed `name`; loader workers stop when the block ends."""
    if name == "on_gpu":
        fixed = random_batches_for(cfg, device)
        yield lambda step: fixed
        return
    path = "cpu" if name == "cpu_loader" else "gpu"
    feed_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"data_path": path})})
    ctx = DistributedContext(rank=0, world_size=1, local_rank=0, device=device)
    streams = build_streams(feed_cfg, method_spec(feed_cfg), split, ctx, 0)
    past_burn_in = feed_cfg.train.consistency.burn_in_iters
    yield lambda step: streams.next(step + past_burn_in)


def time_feed(step: Iteration, feed: Feed, warmup: int, iters: int, rounds: int) -> tuple[float, int]:
    """Best of `rounds` timings of `iters` iterations (seconds per iteration) and the crops per iteration."""
    counter = 0
    crops = 0
    for _ in range(warmup):
        crops = step(feed(counter))
        counter += 1
    best = float("inf")
    for _ in range(rounds):
        synchronize(step.device)
        start = time.perf_counter()
        for _ in range(iters):
            crops = step(feed(counter))
            counter += 1
        synchronize(step.device)
        best = min(best, (time.perf_counter() - start) / iters)
    return best, crops


def busy_fraction(step: Iteration, feed: Feed, iters: int) -> float | None:
    """Sum of CUDA kernel durations over the wall time of `iters` profiled iterations; None off CUDA."""
    if step.device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    synchronize(step.device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for i in range(iters):
            step(feed(10_000 + i))
        synchronize(step.device)
        wall_us = (time.perf_counter() - start) * 1e6
    kernel_us = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type.name == "CUDA")
    return kernel_us / wall_us


def configs(args: argparse.Namespace) -> list[tuple[str, str, bool, ExperimentConfig]]:
    """(backbone, method, compiled, config) for every combination asked for."""
    out = []
    workers_total = args.workers if args.workers is not None else (os.cpu_count() or 1)
    base = load_config(args.config, list(args.overrides))
    sizes = [f"train.batch_size={args.batch}", f"train.unlabeled_batch_size={args.batch}"] if args.batch else []
    if args.input_size:
        sizes.append(f"input.image_size=[{args.input_size[0]}, {args.input_size[1]}]")
    for compiled in args.compile:  # eager first: a run cut short by a time limit keeps those
        for backbone in args.backbones or [base.model.backbone]:
            for method in args.methods:
                if compiled and not (
                    (args.compile_backbones is None or backbone in args.compile_backbones)
                    and (args.compile_methods is None or method in args.compile_methods)
                ):
                    continue
                streams = 2 if method != "supervised" else 1
                overrides = [
                    *sizes,
                    f"model.backbone={backbone}",
                    *METHODS[method],
                    f"train.num_workers={workers_total // streams if workers_total else 0}",
                    f"train.compile.student_step={compiled}",
                    f"train.compile.teacher_forward={compiled}",
                    f"train.compile.mode={args.compile_mode}",
                    "train.consistency.confidence_threshold=0.0",
                ]
                out.append((backbone, method, compiled, load_config(args.config, overrides + list(args.overrides))))
    return out


def measure(
    args: argparse.Namespace, device: torch.device, peak: float, record: Callable[[list[dict[str, Any]]], None]
) -> list[dict[str, Any]]:
    """Every requested run; `record` gets the runs so far after each one."""
    split = coco_split(Path(args.coco_ann), Path(args.coco_images))
    runs: list[dict[str, Any]] = []
    flops_of: dict[tuple[str, str], int] = {}
    for backbone, method, compiled, cfg in configs(args):
        step = Iteration(cfg, device)
        if (backbone, method) not in flops_of:  # counted eagerly: the compiled networks do the same arithmetic
            eager_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"compile": CompileConfig()})})
            counted = step if not compiled else Iteration(eager_cfg, device)
            flops_of[backbone, method] = iteration_flops(counted, random_batches_for(cfg, device))
        flops = flops_of[backbone, method]
        for feed_name in args.feeds:
            with feed_of(feed_name, cfg, device, split) as feed:
                seconds, crops = time_feed(step, feed, args.warmup, args.iters, args.rounds)
                busy = busy_fraction(step, feed, max(1, min(args.iters, 5)))
            tflops = flops / seconds / 1e12
            run = {
                "backbone": backbone,
                "method": method,
                "feed": feed_name,
                "compiled": compiled,
                "crops_per_iter": crops,
                "ms_per_iter": 1000 * seconds,
                "crops_per_s": crops / seconds,
                "gflop_per_iter": flops / 1e9,
                "tflops": tflops,
                "fraction_of_peak": tflops / peak,
                "busy": busy,
            }
            runs.append(run)
            record(runs)
            print(row_of(run), flush=True)
            gc.collect()  # the feed's loader workers stop here
        del step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return runs


def random_batches_for(cfg: ExperimentConfig, device: torch.device) -> Batches:
    labeled, unlabeled = random_batches(cfg, device)
    return labeled, unlabeled if method_spec(cfg).uses_unlabeled else None


def row_of(run: dict[str, Any]) -> str:
    busy = "" if run["busy"] is None else f"{run['busy']:.0%}"
    return (
        f"| {run['backbone']} | {run['method']} | {run['feed']} | {'yes' if run['compiled'] else 'no'} | "
        f"{run['ms_per_iter']:.1f} | {run['crops_per_s']:,.0f} | {run['tflops']:.3g} | "
        f"{run['fraction_of_peak']:.1%} | {busy} |"
    )


TABLE_HEAD = (
    "| backbone | iteration | feed | compiled | ms/iter | crops/s | TFLOP/s | of bf16 peak | GPU busy |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def table(report: dict[str, Any]) -> str:
    lines = [
        f"{report['device']}, torch {report['torch']}, {report['date']}: {report['input'][0]}x{report['input'][1]} input, "
        f"{report['batch']} + {report['unlabeled_batch']} crops (TRS), bf16 autocast {'on' if report['amp_bf16'] else 'off'}, "
        f"best of {report['rounds']} rounds of {report['iters']} iterations after {report['warmup']} warm-ups; "
        f"bf16 matmul peak measured in the same run: {report['peak_tflops']:.3g} TFLOP/s.",
        "",
        TABLE_HEAD,
        *(row_of(run) for run in report["runs"]),
    ]
    return "\n".join(lines)


def write_docs(path: Path, text: str) -> None:
    """Replace the block between the gpu_throughput markers of `path` (appended when it has none)."""
    doc = path.read_text() if path.is_file() else ""
    block = f"{DOCS_START}\n{text}\n{DOCS_END}"
    if DOCS_START in doc and DOCS_END in doc:
        head, rest = doc.split(DOCS_START, 1)
        doc = head + block + rest.split(DOCS_END, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    write_atomically(path, doc)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    repo = Path(__file__).resolve().parents[1]
    coco = Path(os.environ.get("TRS_POSE_SHARED", repo.parent / "shared")) / "data" / "coco-mini"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="Experiment YAML; the flags below override it.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Config override (repeatable).")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--backbones", default=None, type=lambda s: s.split(","), help="[default: the config's]")
    parser.add_argument("--methods", default=",".join(METHODS), type=lambda s: s.split(","))
    parser.add_argument("--feeds", default=",".join(FEEDS), type=lambda s: s.split(","))
    parser.add_argument(
        "--compile", default="off", type=lambda s: [v == "on" for v in s.split(",")], help="off, on or off,on"
    )
    parser.add_argument(
        "--compile-backbones", default=None, type=lambda s: s.split(","), help="compiled runs for these only"
    )
    parser.add_argument(
        "--compile-methods", default=None, type=lambda s: s.split(","), help="compiled runs for these only"
    )
    parser.add_argument("--compile-mode", default="default", help="train.compile.mode of the compiled runs")
    parser.add_argument("--batch", type=int, default=None, help="labeled = unlabeled crops [default: the config's]")
    parser.add_argument(
        "--input", dest="input_size", default=None, type=lambda s: tuple(map(int, s.split("x"))), help="HxW"
    )
    parser.add_argument("--workers", type=int, default=None, help="loader workers in all [default: the cores]")
    default_ann, default_images = coco_layout(coco, "train2017")
    parser.add_argument("--coco-ann", default=str(default_ann))
    parser.add_argument("--coco-images", default=str(default_images))
    parser.add_argument("--coco-root", default=None, help="a COCO layout root: sets --coco-ann and --coco-images")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per round")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds; the best counts")
    parser.add_argument("--peak-size", type=int, default=8192, help="side of the bf16 matmul that measures the peak")
    parser.add_argument("--json-out", default="runs/bench/train_throughput.json", help="where the figures go")
    parser.add_argument("--table-out", default=None, help="also write the markdown table here")
    parser.add_argument("--docs", default=None, help="replace the gpu_throughput block of this markdown file")
    args = parser.parse_args(argv)
    if args.coco_root:
        args.coco_ann, args.coco_images = map(str, coco_layout(args.coco_root, "train2017"))
    unknown = sorted((set(args.feeds) - set(FEEDS)) | (set(args.methods) - set(METHODS)))
    if unknown:
        parser.error(f"unknown feeds or methods {unknown}; feeds: {FEEDS}, methods: {tuple(METHODS)}")
    if not Path(args.coco_ann).is_file() and set(args.feeds) - {"on_gpu"}:
        parser.error(f"{args.coco_ann}: no COCO keypoint file for the JPEG feeds (--coco-root or --coco-ann)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    peak = bf16_matmul_peak_tflops(device, args.peak_size)
    print(TABLE_HEAD, flush=True)
    first = configs(args)[0][3]
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "peak_tflops": peak,
        "amp_bf16": device.type == "cuda",
        "input": list(first.input.image_size),
        "batch": first.train.batch_size,
        "unlabeled_batch": first.train.unlabeled_batch_size,
        "warmup": args.warmup,
        "iters": args.iters,
        "rounds": args.rounds,
        "runs": [],
    }
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def record(runs: list[dict[str, Any]]) -> None:
        report["runs"] = runs
        write_atomically(out, json.dumps(report, indent=1) + "\n")
        if args.table_out:
            write_atomically(Path(args.table_out), table(report) + "\n")

    measure(args, device, peak, record)
    if args.docs:
        write_docs(Path(args.docs), table(report))
    print(f"\nwrote {out}", flush=True)
    return report


if __name__ == "__main__":
    main()
