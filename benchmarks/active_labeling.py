"""Which images to label next: the method's own suggestions against a random pick.

On the synthetic people of benchmarks/ssl_gain.py, from 5% of the training images labeled: a first TRS
run trains; then N more images get their labels, chosen (a) at random among the unlabeled ones, (b) by
`trs-pose suggest` from the first run's checkpoint (the teacher and reviewer's disagreement, N images,
near-duplicates left out). Each choice is retrained from scratch with the same budget and scored on
the test set. The goal: suggested at least random + 1 AP. It also reports what the scores picked: the
first model's error breakdown (components/evaluation/error_breakdown.py) on the people of each pick.

    python benchmarks/active_labeling.py --jobs 2                     # 3 seeds, N = 75 (5% more)
    python benchmarks/active_labeling.py --iterations 20 --images 60 --val-images 10 --test-images 10 \\
        --added 6 --seeds 0   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ssl_gain import (  # noqa: E402
    add_shared_arguments,
    child_run,
    ensure_data,
    ensure_test_data,
    run_overrides,
    scored,
)
from components.atomic_files import write_atomically  # noqa: E402
from components.config import ExperimentConfig, load_config  # noqa: E402
from components.data.split import SplitFiles, coco_layout, make_split  # noqa: E402

CHOICES = ("random", "suggested")


def config(seed: int, name: str, args: argparse.Namespace, work: Path) -> ExperimentConfig:
    checkpoints = work / "checkpoints" / name / f"seed{seed}"
    return load_config(
        args.config,
        [
            *run_overrides(args, work / "data", seed, args.iterations, checkpoints),
            "data.num_labeled=null",
            f"data.labeled_fraction={args.labeled_fraction}",
            *args.overrides,
        ],
    )


def first_split(seed: int, args: argparse.Namespace, work: Path) -> SplitFiles:
    cfg = config(seed, "first", args, work)
    train_ann, train_images = coco_layout(work / "data", "train")
    val_ann, val_images = coco_layout(work / "data", "val")
    return make_split(train_ann, train_images, val_ann, val_images, work / "splits" / f"first-seed{seed}", cfg.data)


def with_labels_for(split: SplitFiles, chosen: set[int], out: Path) -> SplitFiles:
    """`split` with the chosen unlabeled images labeled (their ground truth from the training file)."""
    train = json.loads(coco_layout(split.train_images.parent, "train")[0].read_text())
    labeled = json.loads(split.labeled_ann.read_text())
    unlabeled = json.loads(split.unlabeled_ann.read_text())
    labeled["images"] += [image for image in train["images"] if image["id"] in chosen]
    labeled["annotations"] += [ann for ann in train["annotations"] if ann["image_id"] in chosen]
    unlabeled["images"] = [image for image in unlabeled["images"] if image["id"] not in chosen]
    unlabeled["annotations"] = [ann for ann in unlabeled["annotations"] if ann["image_id"] not in chosen]
    out.mkdir(parents=True, exist_ok=True)
    (out / "labeled.json").write_text(json.dumps(labeled))
    (out / "unlabeled.json").write_text(json.dumps(unlabeled))
    (out / "manifest.json").write_text(split.manifest.read_text())
    return SplitFiles(
        out / "labeled.json",
        out / "unlabeled.json",
        split.holdout_ann,
        split.train_images,
        split.val_ann,
        split.val_images,
        out / "manifest.json",
    )


def choose(kind: str, seed: int, args: argparse.Namespace, work: Path) -> list[int]:
    """The image ids a choice labels: random, or the first run's suggestions."""
    from components.engine.checkpoint import latest_checkpoint, load_checkpoint
    from components.labeling.suggest import unlabeled_people
    from components.labeling.suggestions import pick_images
    from components.labeling.uncertainty import score_people, scoring_models

    split = first_split(seed, args, work)
    if kind == "random":
        ids = sorted({int(i["id"]) for i in json.loads(split.unlabeled_ann.read_text())["images"]})
        return sorted(int(i) for i in np.random.default_rng(seed).choice(ids, size=args.added, replace=False))
    state = load_checkpoint(latest_checkpoint(work / "checkpoints" / "first" / f"seed{seed}") or "")
    cfg = ExperimentConfig.model_validate(state["config"])
    people = unlabeled_people(split, cfg)
    picked = pick_images(score_people(scoring_models(state, cfg), people, cfg), args.added, lambda p: (p.name, str(p)))
    return sorted({person.record.image_id for suggestion in picked for person in suggestion.people})


def run_one(kind: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from components.engine.checkpoint import load_student
    from components.engine.trainer import train

    split = first_split(seed, args, work)
    chosen: list[int] = []
    if kind != "first":
        chosen = choose(kind, seed, args, work)
        split = with_labels_for(split, set(chosen), work / "splits" / f"{kind}-seed{seed}")
    cfg = config(seed, kind, args, work)
    started = time.perf_counter()
    result = train(cfg, split, progress=not args.no_progress)
    minutes = (time.perf_counter() - started) / 60
    model, trained = load_student(result.checkpoint_uri)
    return {**scored(model, trained, work / "data", work / "test"), "train_minutes": minutes, "chosen": chosen}


def breakdown(chosen: list[int], seed: int, work: Path) -> dict[str, float]:
    """The first model's errors on the people of the chosen images (their ground truth is known here)."""
    import tempfile

    from components.engine.checkpoint import latest_checkpoint, load_student
    from components.evaluation.error_breakdown import error_breakdown, keypoint_outcomes
    from components.evaluation.evaluate import evaluate_model

    train_ann, train_images = coco_layout(work / "data", "train")
    train = json.loads(train_ann.read_text())
    ids = set(chosen)
    subset = {
        **train,
        "images": [i for i in train["images"] if i["id"] in ids],
        "annotations": [a for a in train["annotations"] if a["image_id"] in ids],
    }
    model, cfg = load_student(latest_checkpoint(work / "checkpoints" / "first" / f"seed{seed}") or "")
    with tempfile.TemporaryDirectory() as scratch:
        ann = Path(scratch) / "chosen.json"
        ann.write_text(json.dumps(subset))
        results = Path(scratch) / "results.json"
        evaluate_model(model, ann, train_images, cfg, results_out=results, num_workers=0)
        errors = error_breakdown(ann, results)
        people = keypoint_outcomes(ann, results).people
    return {**{k: float(v) for k, v in errors.items()}, "mean_oks": float(np.mean([p.oks for p in people]))}


def run_child(kind: str, seed: int, argv: list[str], work: Path, threads: int) -> dict[str, Any]:
    run = ["--one-run", f"{kind}/{seed}"]
    files = work / "logs" / f"{kind}-seed{seed}"
    return child_run(str(Path(__file__).resolve()), argv, run, f"{kind} seed {seed}", files, threads)


def table(results: dict[str, Any], seeds: list[int], args: argparse.Namespace) -> str:
    def values(kind: str, metric: str) -> list[float]:
        return [
            results[f"{kind}/{s}"][metric]
            for s in seeds
            if f"{kind}/{s}" in results and metric in results[f"{kind}/{s}"]
        ]

    def cell(numbers: list[float], scale: float = 100.0) -> str:
        if not numbers:
            return ""
        spread = statistics.stdev(numbers) * scale if len(numbers) > 1 else 0.0
        return f"{statistics.fmean(numbers) * scale:.1f} ± {spread:.1f}"

    lines = [
        f"Test AP (points, mean ± std over {len(seeds)} seeds): {args.labeled_fraction:.0%} labels, then {args.added} "
        f"more images labeled, each run {args.iterations} iterations from scratch.",
        "",
        "| labels | test AP | per seed | first model on the chosen people: mean OKS | good | jitter | inversion | swap | miss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("first", *CHOICES):
        aps = values(kind, "test_AP")
        per_seed = " / ".join(f"{100 * v:.1f}" for v in aps)
        bins = [
            cell(values(f"{kind}-errors", name)) for name in ("mean_oks", "good", "jitter", "inversion", "swap", "miss")
        ]
        label = {"first": f"{args.labeled_fraction:.0%} (the first run)", "random": f"+{args.added} at random",
                 "suggested": f"+{args.added} suggested"}[kind]  # fmt: skip
        lines.append(f"| {label} | {cell(aps)} | {per_seed} | {' | '.join(bins)} |")
    random_ap, suggested_ap = values("random", "test_AP"), values("suggested", "test_AP")
    paired = [100 * (s - r) for s, r in zip(suggested_ap, random_ap, strict=False)]
    if paired:
        lines += ["", f"Suggested minus random, per seed: {' / '.join(f'{d:+.1f}' for d in paired)}; mean "
                      f"{statistics.fmean(paired):+.1f} AP (goal: at least +1)."]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shared_arguments(parser, "runs/bench/active_labeling")
    parser.add_argument("--labeled-fraction", type=float, default=0.05)
    parser.add_argument("--added", type=int, default=75, help="images labeled after the first run")
    parser.add_argument("--one-run", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work_dir).resolve()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    ensure_data(work / "data", args)
    ensure_test_data(work / "test", args)
    if args.one_run:
        kind, seed = args.one_run.split("/")
        Path(args.one_run_out).write_text(json.dumps(run_one(kind, int(seed), args, work)))
        return ""
    results_file = work / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    for wave in ([("first", s) for s in seeds], [(kind, s) for s in seeds for kind in CHOICES]):
        pending = [run for run in wave if f"{run[0]}/{run[1]}" not in results]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            children = pool.map(lambda r: run_child(r[0], r[1], argv or sys.argv[1:], work, threads), pending)
            for (kind, seed), metrics in zip(pending, children):
                results[f"{kind}/{seed}"] = metrics
                if kind in CHOICES:
                    results[f"{kind}-errors/{seed}"] = breakdown(metrics["chosen"], seed, work)
                write_atomically(results_file, json.dumps(results, indent=1))
                print(f"   {kind} seed {seed}: test AP {100 * metrics['test_AP']:.1f}", flush=True)
    text = table(results, seeds, args)
    print(text)
    if args.markdown_out:
        Path(args.markdown_out).write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
