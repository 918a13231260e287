"""Warm start against training from scratch, after new labels: is the champion's knowledge worth reusing?

On the synthetic people of benchmarks/ssl_gain.py: a champion is trained with TRS on 20% of the
training images labeled; then 10% more are labeled (the 30% subset contains the 20% one: one
permutation, seeded). The 30% set is trained from scratch and from the champion (`train.init`, the
schedule of `train.warm_start`), each at several budgets, and every model is scored on the test set.
The question: at which budget does the warm start reach the from-scratch run's final AP? The goal is
at most 40% of the from-scratch budget.

    python benchmarks/warm_start.py --jobs 2                         # 3 seeds, budgets 10-100% of 1,000
    python benchmarks/warm_start.py --iterations 20 --images 60 --val-images 10 --test-images 10 --seeds 0  # smoke

Runs are cached in WORK_DIR/results.json (a killed benchmark continues); --jobs runs them side by side
in child processes of --threads torch threads each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
from components.config import load_config  # noqa: E402
from components.data.split import coco_layout, make_split  # noqa: E402


def run_one(kind: str, budget: int, seed: int, args: argparse.Namespace, work: Path) -> dict[str, float]:
    """`champion` (20% labels, full budget), or `scratch` / `warm` at `budget` iterations on 30% labels."""
    from components.engine.checkpoint import load_student
    from components.engine.trainer import train
    from components.serving.model_source import load_initial_weights

    data_root = work / "data"
    fraction = args.champion_fraction if kind == "champion" else args.champion_fraction + args.added_fraction
    checkpoints = work / "checkpoints" / f"{kind}-{budget}" / f"seed{seed}"
    overrides = [
        *run_overrides(args, data_root, seed, budget, checkpoints),
        "data.num_labeled=null",
        f"data.labeled_fraction={fraction}",
        *args.overrides,
    ]
    init = None
    if kind == "warm":
        champion = work / "checkpoints" / f"champion-{args.iterations}" / f"seed{seed}"
        overrides.append(f"train.init={champion}")
    cfg = load_config(args.config, overrides)
    train_ann, train_images = coco_layout(data_root, "train")
    val_ann, val_images = coco_layout(data_root, "val")
    split = make_split(
        train_ann, train_images, val_ann, val_images, work / "splits" / f"frac{fraction:g}-seed{seed}", cfg.data
    )
    if kind == "warm":
        from components.engine.checkpoint import latest_checkpoint

        source = latest_checkpoint(cfg.train.init)
        if source is None:
            raise RuntimeError(f"no champion checkpoint in {cfg.train.init}: run the champion first")
        with tempfile.TemporaryDirectory() as scratch:
            init = load_initial_weights(source, None, scratch)
    started = time.perf_counter()
    result = train(cfg, split, init=init, progress=not args.no_progress)
    minutes = (time.perf_counter() - started) / 60
    model, trained = load_student(result.checkpoint_uri)
    return {**scored(model, trained, data_root, work / "test"), "train_minutes": minutes}


def budgets(args: argparse.Namespace) -> list[int]:
    return sorted({max(1, round(args.iterations * share)) for share in args.shares})


def plan(args: argparse.Namespace, seeds: list[int]) -> list[list[tuple[str, int, int]]]:
    """Waves of runs: every champion first (the warm starts need them), then everything else."""
    champions = [("champion", args.iterations, seed) for seed in seeds]
    rest = [(kind, budget, seed) for seed in seeds for kind in ("warm", "scratch") for budget in budgets(args)]
    return [champions, rest]


def key(kind: str, budget: int, seed: int) -> str:
    return f"{kind}/{budget}/{seed}"


def run_child(run: tuple[str, int, int], argv: list[str], work: Path, threads: int) -> dict[str, float]:
    kind, budget, seed = run
    files = work / "logs" / f"{kind}-{budget}-seed{seed}"
    return child_run(str(Path(__file__).resolve()), argv, ["--one-run", key(*run)], key(*run), files, threads)


def table(results: dict[str, dict[str, float]], args: argparse.Namespace, seeds: list[int]) -> str:
    """Test AP against iterations, scratch and warm, mean ± std over seeds; and the goal's verdict."""

    def stats(kind: str, budget: int) -> tuple[float, float] | None:
        values = [100 * results[key(kind, budget, s)]["test_AP"] for s in seeds if key(kind, budget, s) in results]
        if not values:
            return None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    lines = [
        f"Test AP (points, mean ± std over {len(seeds)} seeds) against iterations: {args.champion_fraction:.0%} "
        f"labels for the champion ({args.iterations} iterations), {args.champion_fraction + args.added_fraction:.0%} "
        "for the runs below.",
        "",
        "| iterations | share of the budget | from scratch | warm start from the champion | warm minutes/run |",
        "|---|---|---|---|---|",
    ]
    for budget in budgets(args):
        cells = []
        for kind in ("scratch", "warm"):
            found = stats(kind, budget)
            cells.append(f"{found[0]:.1f} ± {found[1]:.1f}" if found else "")
        minutes = [results[key("warm", budget, s)]["train_minutes"] for s in seeds if key("warm", budget, s) in results]
        spent = f"{statistics.fmean(minutes):.1f}" if minutes else ""
        lines.append(f"| {budget} | {budget / args.iterations:.0%} | {cells[0]} | {cells[1]} | {spent} |")
    champion = stats("champion", args.iterations)
    final = stats("scratch", args.iterations)
    if champion:
        lines += [
            "",
            f"The champion itself ({args.champion_fraction:.0%} labels): {champion[0]:.1f} ± {champion[1]:.1f}.",
        ]
    if final:
        reached = [b for b in budgets(args) if (found := stats("warm", b)) and found[0] >= final[0]]
        verdict = (
            f"the warm start reaches it at {reached[0]} iterations ({reached[0] / args.iterations:.0%} of the budget)"
            if reached
            else "no warm-start budget measured reaches it"
        )
        lines.append(f"From scratch at the full budget: {final[0]:.1f}; {verdict} (goal: at most 40%).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shared_arguments(parser, "runs/bench/warm_start")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.2, 0.4, 1.0], help="budgets, as shares")
    parser.add_argument("--champion-fraction", type=float, default=0.2)
    parser.add_argument("--added-fraction", type=float, default=0.1)
    parser.add_argument("--one-run", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work_dir).resolve()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    ensure_data(work / "data", args)
    ensure_test_data(work / "test", args)
    if args.one_run:
        kind, budget, seed = args.one_run.split("/")
        metrics = run_one(kind, int(budget), int(seed), args, work)
        Path(args.one_run_out).write_text(json.dumps(metrics))
        return ""
    results_file = work / "results.json"
    results: dict[str, dict[str, float]] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    for wave in plan(args, seeds):
        pending = [run for run in wave if key(*run) not in results]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for run, metrics in zip(
                pending, pool.map(lambda r: run_child(r, argv or sys.argv[1:], work, threads), pending)
            ):
                results[key(*run)] = metrics
                write_atomically(results_file, json.dumps(results, indent=1))
                print(
                    f"   {key(*run)}: test AP {100 * metrics['test_AP']:.1f}, {metrics['train_minutes']:.1f} min",
                    flush=True,
                )
    text = table(results, args, seeds)
    print(text)
    if args.markdown_out:
        Path(args.markdown_out).write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
