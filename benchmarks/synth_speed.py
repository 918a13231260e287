"""Synthetic-people throughput: images per second written to disk (render + JPEG + COCO JSON).

Usage: python benchmarks/synth_speed.py [--images 1000] [--workers 1 2] [--height 256 --width 320]
Prints one line per worker count, plus the machine's load average, since a shared machine skews it.
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

from components.data.synthetic import generate_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"machine: {platform.node()} {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            summary = generate_dataset(
                out, args.images, 0, seed=args.seed, image_size=(args.height, args.width), workers=workers
            )
            elapsed = time.perf_counter() - start
        rate = args.images / elapsed
        print(
            f"workers={workers}: {args.images} images ({summary.people['train']} people) of {args.height}x{args.width} "
            f"in {elapsed:.1f} s = {rate:.1f} images/s; 5,000 images would take {5000 / rate / 60:.1f} min"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
