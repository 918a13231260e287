"""Peak memory and time of structural validation on a full-size COCO keypoint file, vs json.load.

Writes a synthetic person_keypoints file shaped like COCO train2017 (118k images, 250k annotations
with polygons) and, each in a fresh process so peaks do not mix, measures:
  - `json.load` of the file (what a naive validator or pycocotools holds),
  - `validate_dataset(..., check_images=False, expectations=False)` (streaming reader),
  - the same with the Great Expectations layer,
  - `make_split` with 1,000 labeled images (streams the file three times, spools the outputs).
Prints one line per measurement: seconds and peak RSS in MiB.

    .venv/bin/python benchmarks/bench_validation_memory.py [--annotations 250000] [--keep FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.keypoints import COCO_PERSON  # noqa: E402

MEASURE = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
start = time.perf_counter()
mode, path = sys.argv[1], sys.argv[2]
if mode == "json.load":
    with open(path) as handle:
        data = json.load(handle)
    detail = f"{{len(data['annotations'])}} annotations"
elif mode == "split":
    import tempfile
    from components.config import DataConfig
    from components.data.split import make_split
    with tempfile.TemporaryDirectory() as out:
        files = make_split(path, "/x", path, "/x", out, DataConfig(num_labeled=1000, holdout_labeled=100))
        counts = json.loads(files.manifest.read_text())["counts"]
    detail = f"labeled {{counts['labeled']['images']}} / unlabeled {{counts['unlabeled']['images']}} images"
else:
    from components.data.validation import validate_dataset
    report = validate_dataset(path, "/nonexistent", check_images=False, expectations=(mode == "validate+expectations"))
    detail = f"ok={{report.ok}} violations={{len(report.violations)}} annotations={{report.stats['annotations']}}"
seconds = time.perf_counter() - start
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{{mode:<24}} {{seconds:7.1f}} s  peak RSS {{peak_mib:7.0f}} MiB  ({{detail}})")
"""


def write_file(path: Path, num_annotations: int, seed: int = 0) -> None:
    """COCO-shaped: 0.47 images per annotation, half the people labeled, a polygon each."""
    rng = np.random.default_rng(seed)
    num_images = int(num_annotations * 0.473)
    with open(path, "w") as out:
        out.write('{"info": {"description": "benchmark"}, "licenses": [], "images": [\n')
        for i in range(num_images):
            sep = ",\n" if i else ""
            out.write(sep + json.dumps({"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 640, "height": 480,
                                        "license": 1, "coco_url": f"http://example.invalid/{i + 1:012d}.jpg"}))  # fmt: skip
        out.write('\n], "annotations": [\n')
        for a in range(num_annotations):
            x, y = rng.uniform(0, 400), rng.uniform(0, 200)
            w, h = rng.uniform(20, 200), rng.uniform(40, 270)
            labeled = rng.random() < 0.5
            kps = np.zeros((17, 3))
            if labeled:
                kps[:, 0], kps[:, 1] = x + rng.uniform(0, w, 17), y + rng.uniform(0, h, 17)
                kps[:, 2] = rng.choice([0, 1, 2], 17, p=[0.3, 0.1, 0.6])
                kps[kps[:, 2] == 0, :2] = 0
            polygon = np.round(np.stack([x + rng.uniform(0, w, 12), y + rng.uniform(0, h, 12)], 1).ravel(), 2).tolist()
            record = {
                "segmentation": [polygon], "num_keypoints": int(np.count_nonzero(kps[:, 2])), "area": float(w * h * 0.6),
                "iscrowd": 0, "keypoints": [int(v) for v in kps.ravel()], "image_id": int(rng.integers(1, num_images + 1)),
                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)], "category_id": 1, "id": a + 1,
            }  # fmt: skip
            out.write((",\n" if a else "") + json.dumps(record))
        out.write('\n], "categories": [' + json.dumps(COCO_PERSON.coco_category()) + "]}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=int, default=250_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the file here and keep it")
    parser.add_argument("--modes", nargs="+", default=["json.load", "validate", "validate+expectations", "split"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.keep or Path(scratch) / "person_keypoints_bench.json"
        if not path.exists():
            start = time.perf_counter()
            write_file(path, args.annotations)
            print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - start:.1f} s")
        for mode in args.modes:
            subprocess.run([sys.executable, "-c", MEASURE.format(repo=str(REPO)), mode, str(path)], check=True)


if __name__ == "__main__":
    main()
