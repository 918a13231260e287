"""benchmarks/ssl_gain.py end to end at a toy size: every variant trains, is scored and cached."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "ssl_gain.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("ssl_gain", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOY = [
    "--images", "10", "--val-images", "3", "--image-size", "96x128", "--input", "64x48", "--iterations", "4",
    "--batch", "2", "--unlabeled-batch", "2", "--labeled-fraction", "0.3", "--holdout", "2", "--seeds", "0",
    "--no-progress", "--set", "model.deconv_channels=16", "--set", "model.mfl_channels=8",
]


@pytest.mark.slow
def test_toy_benchmark_scores_each_variant_caches_it_and_refuses_other_settings(tmp_path: Path):
    ssl_gain = _load_benchmark()
    work = tmp_path / "bench"
    variants = "supervised,trs,supervised_full"
    table = ssl_gain.main(["--work-dir", str(work), "--variants", variants, "--markdown-out", str(tmp_path / "t.md"), *TOY])

    stored = json.loads((work / "results.json").read_text())
    assert sorted(stored["runs"]) == sorted(variants.split(","))
    for variant, runs in stored["runs"].items():
        assert set(runs) == {"0"}, variant
        assert 0.0 <= runs["0"]["AP"] <= 1.0 and runs["0"]["train_minutes"] > 0
    manifest = json.loads((work / "splits" / "frac0.3-seed0" / "manifest.json").read_text())
    assert manifest["data_config"]["synthetic"] == {
        "num_train_images": 10, "num_val_images": 3, "seed": 0, "image_size": [96, 128], "style": "easy"
    }
    assert manifest["counts"]["labeled"]["images"] == 3 and manifest["counts"]["holdout"]["images"] == 2
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert [row.split("|")[1].strip() for row in rows] == variants.split(",")
    assert (tmp_path / "t.md").read_text().strip() == table.strip()

    # a rerun with the same settings trains nothing (a run that trained would write new checkpoints)
    before = {p: p.stat().st_mtime_ns for p in work.rglob("*.pt")}
    assert ssl_gain.main(["--work-dir", str(work), "--variants", variants, *TOY]) == table
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*.pt")} == before

    with pytest.raises(SystemExit):
        ssl_gain.main(["--work-dir", str(work), "--variants", "supervised", *TOY, "--iterations", "5"])
