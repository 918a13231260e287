"""Semi-supervised gain on synthetic people: supervised, mean_teacher, TRS, its ablations, MultiAugs' views, dual.

Same data, same iterations, same network for every variant; only the method switches differ:

    supervised           labeled crops only (the floor)
    supervised_mfl       supervised with the MFL heads on the labels: how much of TRS's lead is deep supervision
    mean_teacher         + EMA-teacher consistency on unlabeled crops (PoseCons-style)
    trs                  + reviewer + Multi-level Feature Learning + Keypoint-Mix
    trs_no_reviewer      trs without the reviewer
    trs_no_mfl           trs without the MFL heads
    trs_no_keypoint_mix  trs without Keypoint-Mix
    trs_m1               trs with MultiAugs' T_JOCO hard views (joint cut-occlude + Cutout), one path
    trs_multiaug         trs with MultiAugs' multi-path recipe: two hard views, T_JOCO and T_JCCM (joint cutout, CutMix)
    mean_teacher_multiaug  mean_teacher with the same two hard views (MultiAugs' single network, EMA teacher)
    dual                 PoseDual: two students teach each other, the better on the held-out labels is scored
    dual_multiaug        dual with the two MultiAugs hard views (MultiAugs' dual networks; opt-in: twice dual's cost)
    trs_multiaug_no_*    trs_multiaug without the reviewer, the MFL heads or Keypoint-Mix (opt-in: issue 26's ablations)
    trs_gpu_data         trs fed by the GPU data path (train.data_path=gpu): other draws, same augmentation law
    supervised_full      supervised on every training label (the ceiling)

Each variant trains once per seed (the seed picks the labeled subset and the training randomness)
and is scored by COCO keypoint AP with ground-truth boxes on the synthetic validation set and on a
test set drawn with its own seed (--test-images, --test-seed). Nothing is chosen by the test set:
settings are compared on validation (and the reviewer ranks on held-out labels); the test column
is the figure to quote. Runs cached before the test set existed are scored on it from their final
checkpoint. The
schedule's warm-ups, ramp-up and reviewer interval scale with --iterations unless --set says
otherwise. Finished runs are cached in WORK_DIR/results.json and checkpoints resume, so a killed
benchmark continues where it stopped. Prints a markdown table of AP mean and spread.

With --jobs N the runs go to N child processes of --threads torch threads each (default: the
cores shared out); only this process writes results.json. Small networks use many threads
poorly, so on a CPU several narrow runs side by side can beat one wide run after another (on 2
cores a TRS iteration took 0.57 s with 1 thread and 0.33-0.38 s with 2; docs/benchmarks.md).

    python benchmarks/ssl_gain.py --jobs 2                         # the CPU budget of docs/benchmarks.md
    python benchmarks/ssl_gain.py --iterations 20 --images 60 --val-images 10 --seeds 0   # smoke
    python benchmarks/ssl_gain.py --plots docs/img/ssl_gain --plot-only   # the figure of WORK_DIR/results.json
    python benchmarks/ssl_gain.py --work-dir runs/bench/ssl_gain_gpu --style standard --images 4000 \
        --val-images 500 --input 256x192 --backbone resnet18 --iterations 3000 --batch 32 \
        --unlabeled-batch 32 --device cuda --workers 8 --set input.heatmap_stride=4   # a GPU budget
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.atomic_files import write_atomically  # noqa: E402
from components.config import ExperimentConfig, load_config  # noqa: E402
from components.data.prepare import synthesise_if_missing  # noqa: E402
from components.data.split import coco_layout, make_split, sha256_file  # noqa: E402

# MultiAugs' recommended hard views (README: T_JOCO and T_JCCM), one path each (docs/method.md)
MULTIAUG = ["augment.hard_recipe=[joco, jccm]", "train.consistency.hard_views=2"]
VARIANTS: dict[str, list[str]] = {
    "supervised": ["train.method=supervised"],
    "supervised_mfl": ["train.method=supervised", "train.mfl.in_baselines=true"],
    "mean_teacher": ["train.method=mean_teacher"],
    "trs": ["train.method=trs"],
    "trs_no_reviewer": ["train.method=trs", "train.reviewer.enabled=false"],
    "trs_no_mfl": ["train.method=trs", "train.mfl.enabled=false"],
    "trs_no_keypoint_mix": ["train.method=trs", "train.keypoint_mix.enabled=false"],
    "trs_m1": ["train.method=trs", "augment.hard_recipe=joco"],
    "trs_multiaug": ["train.method=trs", *MULTIAUG],
    "trs_multiaug_no_reviewer": ["train.method=trs", *MULTIAUG, "train.reviewer.enabled=false"],
    "trs_multiaug_no_mfl": ["train.method=trs", *MULTIAUG, "train.mfl.enabled=false"],
    "trs_multiaug_no_keypoint_mix": ["train.method=trs", *MULTIAUG, "train.keypoint_mix.enabled=false"],
    "mean_teacher_multiaug": ["train.method=mean_teacher", *MULTIAUG],
    "dual": ["train.method=dual"],
    "dual_multiaug": ["train.method=dual", *MULTIAUG],
    "trs_gpu_data": ["train.method=trs", "train.data_path=gpu"],
    "supervised_full": ["train.method=supervised"],
}
# not in the default set: a data-path check, not an ablation; a second dual row at twice dual's cost; the
# new recipe's ablations (issue 26's 1,000-iteration table: --variants ... --reference trs_multiaug)
OPT_IN_VARIANTS = (
    "trs_gpu_data",
    "dual_multiaug",
    "trs_multiaug_no_reviewer",
    "trs_multiaug_no_mfl",
    "trs_multiaug_no_keypoint_mix",
)
METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR")
CPU_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "ssl_gain_cpu.yaml"


def parse_size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def data_overrides(args: argparse.Namespace, data_root: Path) -> list[str]:
    """data.root and data.synthetic as the flags ask, so the draw and every split's manifest agree."""
    height, width = parse_size(args.image_size)
    return [
        f"data.root={data_root}",
        f"data.synthetic.num_train_images={args.images}",
        f"data.synthetic.num_val_images={args.val_images}",
        f"data.synthetic.seed={args.data_seed}",
        f"data.synthetic.image_size=[{height}, {width}]",
        f"data.synthetic.style={args.style}",
    ]


def ensure_data(data_root: Path, args: argparse.Namespace) -> None:
    """Draw the synthetic set unless data_root already holds one drawn with these settings."""
    data_cfg = load_config(args.config, data_overrides(args, data_root)).data
    if synthesise_if_missing(data_cfg):
        print(f"drew {args.images} + {args.val_images} synthetic images into {data_root}", flush=True)


def ensure_test_data(test_root: Path, args: argparse.Namespace) -> None:
    """Draw the test set (its own seed, validation-style images only) unless test_root already holds it."""
    from components.data.synthetic import generate_dataset
    from components.data.synthetic.folder import read_mark
    from components.data.synthetic.writer import synthesis_settings

    height, width = parse_size(args.image_size)
    wanted = synthesis_settings(args.test_seed, args.style, (height, width), 0, args.test_images)
    mark = read_mark(test_root) or {}
    if {split: mark.get(split) for split in wanted} != wanted:
        generate_dataset(
            test_root, 0, args.test_images, seed=args.test_seed, image_size=(height, width), style=args.style
        )
        print(f"drew {args.test_images} synthetic test images (seed {args.test_seed}) into {test_root}", flush=True)


def scored(model: object, cfg: ExperimentConfig, data_root: Path, test_root: Path) -> dict[str, float]:
    """AP and its kin on the validation set, and as `test_*` on the test set."""
    from components.evaluation import evaluate_model

    device = cfg.train.device if cfg.train.device != "auto" else None
    metrics: dict[str, float] = {}
    for prefix, root in (("", data_root), ("test_", test_root)):
        ann, images = coco_layout(root, "val")
        found = evaluate_model(model, ann, images, cfg, device=device)  # type: ignore[arg-type]
        metrics.update({f"{prefix}{k}": float(found[k]) for k in METRICS})
    return metrics


def labeled_image_count(ann_file: Path) -> int:
    coco = json.loads(ann_file.read_text())
    return len({a["image_id"] for a in coco["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd")})


def scaled_schedule(iterations: int, burn_in_fraction: float) -> list[str]:
    """Warm-ups and intervals as fractions of the run, so a short run still reaches every phase."""
    burn_in = int(iterations * burn_in_fraction)
    return [
        f"train.warmup_iters={max(1, iterations // 20)}",
        f"train.consistency.burn_in_iters={burn_in}",
        f"train.ema.warmup_iters={max(1, iterations // 10)}",
        f"train.consistency.rampup_iters={max(1, iterations // 5)}",
        f"train.reviewer.check_every={max(1, iterations // 10)}",
        f"train.checkpoint.every={max(1, iterations // 4)}",
        "train.checkpoint.keep_last=1",
        f"train.log_every={max(1, iterations // 10)}",
    ]


def run_overrides(
    args: argparse.Namespace, data_root: Path, seed: int, iterations: int, checkpoints: Path, workers: int = 0
) -> list[str]:
    """One run's settings from the shared flags: data, seed, network, batches, budget and its schedule."""
    return [
        *data_overrides(args, data_root),
        f"data.split_seed={seed}",
        f"data.holdout_labeled={args.holdout}",
        f"input.image_size=[{args.input_size[0]}, {args.input_size[1]}]",
        f"model.backbone={args.backbone}",
        f"train.iterations={iterations}",
        f"train.batch_size={args.batch}",
        f"train.unlabeled_batch_size={args.unlabeled_batch}",
        f"train.seed={seed}",
        f"train.num_workers={workers}",
        f"eval.num_workers={workers}",
        f"train.checkpoint.dir={checkpoints}",
        *scaled_schedule(iterations, args.burn_in_fraction),
    ]


def run_variant(variant: str, seed: int, args: argparse.Namespace, data_root: Path, work: Path) -> dict[str, float]:
    from components.engine.checkpoint import load_student
    from components.engine.trainer import train

    train_ann, train_images = coco_layout(data_root, "train")
    val_ann, val_images = coco_layout(data_root, "val")
    checkpoints = work / "checkpoints" / variant / f"seed{seed}"
    overrides = [
        *run_overrides(args, data_root, seed, args.iterations, checkpoints, args.workers),
        f"train.device={args.device}",
        *VARIANTS[variant],
    ]
    if variant == "supervised_full":
        overrides.append(f"data.num_labeled={labeled_image_count(train_ann) - args.holdout}")
    else:
        overrides += ["data.num_labeled=null", f"data.labeled_fraction={args.labeled_fraction}"]
    cfg: ExperimentConfig = load_config(args.config, overrides + list(args.overrides))
    split_name = "full" if variant == "supervised_full" else f"frac{args.labeled_fraction:g}"
    split = make_split(
        train_ann, train_images, val_ann, val_images, work / "splits" / f"{split_name}-seed{seed}", cfg.data
    )
    started = time.perf_counter()
    result = train(cfg, split, progress=not args.no_progress)
    minutes = (time.perf_counter() - started) / 60
    model, trained = load_student(result.checkpoint_uri)
    return {**scored(model, trained, data_root, work / "test"), "train_minutes": minutes}


def backfill_test(variant: str, seed: int, args: argparse.Namespace, data_root: Path, work: Path) -> dict[str, float]:
    """Test metrics of a run cached before the test set existed, from its final checkpoint."""
    from components.engine.checkpoint import latest_checkpoint, load_student

    uri = latest_checkpoint(work / "checkpoints" / variant / f"seed{seed}")
    if uri is None:
        return {}
    model, trained = load_student(uri)
    return {k: v for k, v in scored(model, trained, data_root, work / "test").items() if k.startswith("test_")}


def run_child(variant: str, seed: int, argv: list[str], work: Path, threads: int) -> dict[str, float]:
    """One run in a fresh interpreter with `threads` torch threads; its log goes to WORK_DIR/logs."""
    run = ["--seeds", str(seed), "--variants", variant, "--jobs", "1"]
    files = work / "logs" / f"{variant}-seed{seed}"
    return child_run(str(Path(__file__).resolve()), argv, run, f"{variant} seed {seed}", files, threads)


def run_in_children(
    pending: list[tuple[str, int]],
    argv: list[str],
    args: argparse.Namespace,
    work: Path,
    record: Callable[[str, int, dict[str, float]], None],
) -> None:
    """Train `pending` (variant, seed) runs args.jobs at a time; a failed run costs only itself."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    failures = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_child, v, s, argv, work, threads): (v, s) for v, s in pending}
        print(
            f"== {len(pending)} runs, {args.jobs} at a time, {threads} torch thread(s) each; logs in {work / 'logs'}",
            flush=True,
        )
        for future in as_completed(futures):
            variant, seed = futures[future]
            try:
                record(variant, seed, future.result())
            except RuntimeError as error:
                failures.append(str(error))
    if failures:
        raise SystemExit("\n".join(failures))


def summarise(results: dict[str, dict[str, dict[str, float]]], variants: list[str], args: argparse.Namespace) -> str:
    def mean_std(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    def mean_of(variant: str, metric: str) -> float | None:
        values = [r[metric] for r in results.get(variant, {}).values() if metric in r]
        return statistics.fmean(values) if values else None

    lines = [
        f"{args.iterations} iterations, batch {args.batch} labeled + {args.unlabeled_batch} unlabeled, "
        f"{args.backbone} at {args.input_size[0]}x{args.input_size[1]}, {args.images} {args.style} synthetic training images "
        f"({args.labeled_fraction:.0%} labeled, {args.holdout} held out for the reviewer), "
        f"{args.val_images} validation and {args.test_images} test images (test seed {args.test_seed}); AP in points "
        "(x100), mean ± sample std over seeds; Δ on the test set.",
        "",
        "| variant | seeds | val AP | test AP | test AP50 | test AP75 | test AR | Δ vs supervised | "
        "Δ vs supervised_mfl | train min/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in variants:
        runs = list(results.get(variant, {}).values())
        if not runs:
            continue
        cells = []
        for metric in ("AP", "test_AP", "test_AP50", "test_AP75", "test_AR"):
            values = [100 * r[metric] for r in runs if metric in r]
            mean, std = mean_std(values) if values else (float("nan"), 0.0)
            cells.append(f"{mean:.1f} ± {std:.1f}" if values else "")
        own = mean_of(variant, "test_AP")
        for floor_variant in ("supervised", "supervised_mfl"):
            floor = mean_of(floor_variant, "test_AP")
            cells.append("" if own is None or floor is None else f"{100 * (own - floor):+.1f}")
        minutes = statistics.fmean(r["train_minutes"] for r in runs)
        lines.append(f"| {variant} | {len(runs)} | {' | '.join(cells)} | {minutes:.1f} |")
    floor, ceiling = mean_of("supervised", "test_AP"), mean_of("supervised_full", "test_AP")
    if floor is not None and ceiling is not None and ceiling > floor:
        closed = [
            f"{variant} {100 * ((mean_of(variant, 'test_AP') or floor) - floor) / (ceiling - floor):.0f}%"
            for variant in variants
            if variant not in ("supervised", "supervised_full") and mean_of(variant, "test_AP") is not None
        ]
        lines += ["", f"Share of the supervised-to-ceiling gap closed (test): {', '.join(closed)}."]
    return "\n".join(lines + ["", per_seed_table(results, variants, reference_name=args.reference)])


def _signed(points: float) -> str:
    return f"{round(points, 1) + 0.0:+.1f}"  # + 0.0 turns a rounded -0.0 into 0.0


def per_seed_table(
    results: dict[str, dict[str, dict[str, float]]],
    variants: list[str],
    metric: str = "test_AP",
    reference_name: str = "trs",
) -> str:
    """Test AP per seed and the paired difference to trs: the same seed draws the same labeled subset,
    so the pairs remove the subset-to-subset spread that the mean ± std rows carry."""
    seeds = sorted({int(s) for runs in results.values() for s in runs})
    reference = {s: r for s, r in results.get(reference_name, {}).items() if metric in r}
    header = ["variant", *(f"seed {s}" for s in seeds), f"paired Δ vs {reference_name} (per seed)", "mean paired Δ"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in variants:
        runs = results.get(variant, {})
        if not runs:
            continue
        cells = [f"{100 * runs[str(s)][metric]:.1f}" if metric in runs.get(str(s), {}) else "" for s in seeds]
        paired = [
            100 * (runs[str(s)][metric] - reference[str(s)][metric])
            for s in seeds
            if metric in runs.get(str(s), {}) and str(s) in reference
        ]
        if variant == reference_name or not paired:
            cells += ["", ""]
        else:
            cells += [" / ".join(_signed(d) for d in paired), _signed(statistics.fmean(paired))]
        lines.append(f"| {variant} | {' | '.join(cells)} |")
    return "\n".join(lines)


def draw_comparison(stored: dict, variants: list[str], seeds: list[int], out_dir: str | Path) -> Path:
    """AP per variant with its seed spread, and the per-seed paired differences to trs, as ssl_gain.png."""
    from components.reporting.canvas import save_figure
    from components.reporting.variant_comparison import variant_comparison_figure

    runs = {v: {s: r for s, r in stored["runs"].get(v, {}).items() if int(s) in seeds} for v in variants}
    ceiling = runs.pop("supervised_full", {})  # 15-25 points up: on the same axis it would flatten the rest
    settings = stored.get("settings", {})
    subtitle = ", ".join(
        text
        for key, text in (
            ("iterations", f"{settings.get('iterations')} iterations"),
            ("labeled_fraction", f"{settings.get('labeled_fraction', 0):.0%} of the images labeled"),
            ("backbone", f"{settings.get('backbone')}"),
        )
        if key in settings
    )
    if ceiling:
        best = max(100 * r["AP"] for r in ceiling.values())
        subtitle += f"; supervised_full (every label, the ceiling, not drawn): {best:.1f}"
    figure = variant_comparison_figure(runs, [v for v in variants if v in runs], subtitle=subtitle)
    return save_figure(figure, Path(out_dir) / "ssl_gain.png")


def add_shared_arguments(parser: argparse.ArgumentParser, work_dir: str) -> None:
    """The flags the CPU benchmarks on synthetic people share (this one, warm_start.py, active_labeling.py):
    the data and its test set, the network, the budget, the seeds and the child processes."""
    parser.add_argument("--work-dir", default=work_dir, help="data, splits, checkpoints and results.json")
    parser.add_argument(
        "--config", default=str(CPU_RECIPE), help="Experiment YAML underneath the benchmark's settings."
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Config override, applied last.")
    parser.add_argument("--images", type=int, default=1500, help="synthetic training images")
    parser.add_argument("--val-images", type=int, default=150)
    parser.add_argument("--test-images", type=int, default=300, help="synthetic test images, drawn with --test-seed")
    parser.add_argument("--test-seed", type=int, default=1000)
    parser.add_argument("--image-size", default="256x320", help="synthetic image HxW")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--style", choices=("standard", "easy"), default="easy", help="synthetic scene style")
    parser.add_argument("--input", dest="input_size", type=parse_size, default=(128, 96), help="network input HxW")
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8, help="labeled crops per iteration")
    parser.add_argument("--unlabeled-batch", type=int, default=8)
    parser.add_argument(
        "--burn-in-fraction", type=float, default=0.3, help="share of the iterations trained on labels only first"
    )
    parser.add_argument(
        "--holdout",
        type=int,
        default=15,
        help="labeled images held out to rank reviewer snapshots (and dual's students)",
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--markdown-out", default=None, help="also write the table here")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained side by side, each in a child process")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)")
    parser.add_argument("--one-run-out", default=None, help=argparse.SUPPRESS)  # a child's metrics file


def child_run(script: str, argv: list[str], run: list[str], label: str, files: Path, threads: int) -> dict[str, Any]:
    """`script` in a fresh interpreter of `threads` torch threads, with this command line and `run`'s flags
    appended (argparse keeps the last value of a repeated flag). Its output goes to FILES.log and its
    metrics are the JSON it writes to FILES.json; a failure names the run (`label`) and its log."""
    log, out = files.with_name(f"{files.name}.log"), files.with_name(f"{files.name}.json")
    files.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    command = [sys.executable, script, *argv, "--no-progress", *run, "--one-run-out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with log.open("w") as sink:
        code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if code != 0 or not out.is_file():
        raise RuntimeError(f"{label} failed (exit code {code}); see {log}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shared_arguments(parser, "runs/bench/ssl_gain")
    parser.add_argument("--labeled-fraction", type=float, default=0.05)
    parser.add_argument("--reference", default="trs", help="the variant the per-seed table pairs every other with")
    parser.add_argument(
        "--variants",
        default=",".join(v for v in VARIANTS if v not in OPT_IN_VARIANTS),
        help=f"comma-separated subset of {','.join(VARIANTS)}",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--plots", default=None, help="draw the cross-variant figure (ssl_gain.png) into this folder")
    parser.add_argument(
        "--plot-only", action="store_true", help="with --plots: draw from WORK_DIR/results.json, train nothing"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--jobs and --threads must be at least 1")

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    work = Path(args.work_dir).resolve()
    results_file = work / "results.json"
    if args.plot_only:
        if not args.plots or not results_file.is_file():
            parser.error(f"--plot-only needs --plots DIR and an existing {results_file}")
        figure = draw_comparison(json.loads(results_file.read_text()), variants, seeds, args.plots)
        print(f"figure: {figure}")
        return ""
    data_root = work / "data"
    ensure_data(data_root, args)
    ensure_test_data(work / "test", args)
    if args.one_run_out:  # a child of --jobs: one run, reported to the parent, no results.json
        metrics = run_variant(variants[0], seeds[0], args, data_root, work)
        Path(args.one_run_out).write_text(json.dumps(metrics))
        return ""
    not_settings = (
        "seeds",
        "variants",
        "no_progress",
        "markdown_out",
        "plots",
        "plot_only",
        "workers",
        "device",
        "work_dir",
        "jobs",
        "threads",
        "one_run_out",
        "reference",
        "test_images",  # the test set is an evaluation, not a setting of the runs: cached runs are scored on it
        "test_seed",
    )
    settings = {k: v for k, v in vars(args).items() if k not in not_settings}
    settings["config_sha256"] = sha256_file(args.config)  # an edited recipe is other settings too
    settings = json.loads(json.dumps(settings))
    stored = json.loads(results_file.read_text()) if results_file.is_file() else {"settings": settings, "runs": {}}
    if stored["settings"] != settings:
        changed = sorted(k for k in settings if stored["settings"].get(k) != settings[k])
        parser.error(f"{work} holds runs made with other settings ({', '.join(changed)}); use another --work-dir")
    results: dict[str, dict[str, dict[str, float]]] = stored["runs"]
    test_set = {"test_images": args.test_images, "test_seed": args.test_seed}
    if stored.get("test") not in (None, test_set):  # scores on another test set: drop them, score again
        for runs in results.values():
            for metrics in runs.values():
                for key in [k for k in metrics if k.startswith("test_")]:
                    del metrics[key]

    def record(variant: str, seed: int, metrics: dict[str, float]) -> None:
        results.setdefault(variant, {})[str(seed)] = metrics
        stored_now = {"settings": settings, "test": test_set, "runs": results}
        write_atomically(results_file, json.dumps(stored_now, indent=1))
        test = f", test AP {100 * metrics['test_AP']:.1f}" if "test_AP" in metrics else ""
        print(f"   {variant} seed {seed}: AP {100 * metrics['AP']:.1f}{test}", flush=True)

    for variant, runs in results.items():
        for seed_key, metrics in runs.items():
            cached_seed = int(seed_key)
            if "test_AP" not in metrics and variant in variants and cached_seed in seeds:
                record(variant, cached_seed, {**metrics, **backfill_test(variant, cached_seed, args, data_root, work)})

    pending = [(v, s) for s in seeds for v in variants if str(s) not in results.get(v, {})]
    if args.jobs == 1:
        if args.threads:
            torch.set_num_threads(args.threads)
        for variant, seed in pending:
            print(f"== {variant} seed {seed}", flush=True)
            record(variant, seed, run_variant(variant, seed, args, data_root, work))
    else:
        run_in_children(pending, argv if argv is not None else sys.argv[1:], args, work, record)
    table = summarise(
        {v: {s: r for s, r in results.get(v, {}).items() if int(s) in seeds} for v in variants}, variants, args
    )
    print(table)
    if args.markdown_out:
        Path(args.markdown_out).write_text(table + "\n")
    if args.plots:
        print(f"figure: {draw_comparison({'settings': settings, 'runs': results}, variants, seeds, args.plots)}")
    return table


if __name__ == "__main__":
    main()
