"""benchmarks/train_throughput.py at a toy size on the CPU: every requested run is measured and written as documented."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.tiny_coco import write_coco

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"
BACKBONES, METHODS, FEEDS = (
    ("resnet10t", "resnet14t"),
    ("supervised", "trs", "trs_multiaug"),
    ("on_gpu", "cpu_loader", "gpu_jpeg"),
)


def _load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_throughput", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_requested_run_is_in_the_json_and_the_docs(tmp_path: Path) -> None:
    bench = _load_benchmark()
    root = tmp_path / "coco"
    ann = root / "person_keypoints.json"
    coco = write_coco(root, 6, seed=0)
    ann.write_text(json.dumps(coco))
    out, doc = tmp_path / "figures" / "gpu_throughput.json", tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nbefore\n")
    argv = [
        "--device", "cpu", "--threads", "1", "--backbones", ",".join(BACKBONES), "--input", "64x48", "--batch", "2",
        "--iters", "1", "--rounds", "1", "--warmup", "1", "--workers", "0", "--peak-size", "64",
        "--coco-ann", str(ann), "--coco-images", str(root / "images"), "--json-out", str(out), "--docs", str(doc),
        "--set", "model.deconv_channels=16", "--set", "model.mfl_channels=8",
    ]  # fmt: skip
    bench.main(argv)
    report = json.loads(out.read_text())
    assert {"device", "date", "torch", "peak_tflops", "runs"} <= set(report) and report["peak_tflops"] > 0
    runs = report["runs"]
    assert sorted((r["backbone"], r["method"], r["feed"]) for r in runs) == sorted(
        itertools.product(BACKBONES, METHODS, FEEDS)
    )
    for run in runs:
        assert set(bench.RUN_KEYS) <= set(run)
        assert run["crops_per_iter"] == (2 if run["method"] == "supervised" else 4)
        assert run["ms_per_iter"] > 0 and run["crops_per_s"] == pytest.approx(
            run["crops_per_iter"] / run["ms_per_iter"] * 1000
        )
        assert run["tflops"] > 0 and run["fraction_of_peak"] == pytest.approx(run["tflops"] / report["peak_tflops"])
        assert run["busy"] is None  # no CUDA kernels to time on a CPU
    flops = {
        method: {r["gflop_per_iter"] for r in runs if r["method"] == method and r["backbone"] == BACKBONES[0]}
        for method in METHODS
    }
    assert all(len(counted) == 1 for counted in flops.values()), "counted once per network and method"
    sup, trs, multiaug = (flops[method].pop() for method in METHODS)
    assert trs > 2 * sup  # teacher and reviewer included
    assert multiaug > trs  # the second hard path is one more student forward and backward

    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nbefore\n") and text.count(bench.DOCS_START) == 1
    assert text.count("| resnet14t | trs | gpu_jpeg |") == 1
    bench.write_docs(doc, "replaced")  # a second run replaces its block
    assert doc.read_text().count(bench.DOCS_START) == 1 and "replaced" in doc.read_text()
    assert "| resnet14t |" not in doc.read_text()


def test_a_missing_coco_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load_benchmark()
    with pytest.raises(SystemExit):
        bench.parse_args(["--coco-ann", str(tmp_path / "none.json")])
    assert "none.json: no COCO keypoint file" in capsys.readouterr().err
