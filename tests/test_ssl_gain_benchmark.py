"""benchmarks/ssl_gain.py end to end at a toy size: every variant trains, is scored and cached."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from components.config import load_config
from components.engine.checkpoint import latest_checkpoint, load_checkpoint

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "ssl_gain.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("ssl_gain", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOY = [
    "--images",
    "10",
    "--val-images",
    "3",
    "--image-size",
    "96x128",
    "--input",
    "64x48",
    "--iterations",
    "4",
    "--batch",
    "2",
    "--unlabeled-batch",
    "2",
    "--labeled-fraction",
    "0.3",
    "--holdout",
    "2",
    "--seeds",
    "0",
    "--no-progress",
    "--set",
    "model.deconv_channels=16",
    "--set",
    "model.mfl_channels=8",
]


def test_per_seed_table_pairs_each_variant_with_trs_on_the_same_seed():
    ssl_gain = _load_benchmark()

    def runs(*aps: float | None) -> dict[str, dict[str, float]]:
        return {str(seed): {"AP": 0.0, "test_AP": ap} for seed, ap in enumerate(aps) if ap is not None}

    results = {
        "trs": runs(0.40, 0.50, 0.45),
        "supervised": runs(0.35, 0.41, 0.44),
        "trs_no_mfl": runs(0.38, None, 0.47),
    }
    table = ssl_gain.per_seed_table(results, ["supervised", "trs", "trs_no_mfl", "mean_teacher"])
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table.splitlines()[2:]}
    assert (
        table.splitlines()[0] == "| variant | seed 0 | seed 1 | seed 2 | paired Δ vs trs (per seed) | mean paired Δ |"
    )
    assert rows["supervised"] == ["35.0", "41.0", "44.0", "-5.0 / -9.0 / -1.0", "-5.0"]
    assert rows["trs"] == ["40.0", "50.0", "45.0", "", ""]
    assert rows["trs_no_mfl"] == ["38.0", "", "47.0", "-2.0 / +2.0", "+0.0"]  # seed 1 missing: paired over 0 and 2
    assert "mean_teacher" not in rows
    against = ssl_gain.per_seed_table(results, ["supervised", "trs"], reference_name="supervised")
    assert "paired Δ vs supervised" in against.splitlines()[0] and "+5.0 / +9.0 / +1.0" in against


def test_every_variant_is_a_valid_config_and_the_new_ones_say_what_they_are():
    ssl_gain = _load_benchmark()
    configs = {name: load_config(ssl_gain.CPU_RECIPE, overrides) for name, overrides in ssl_gain.VARIANTS.items()}
    facts = {
        name: (cfg.train.method, cfg.augment.hard_recipe, cfg.train.consistency.hard_views)
        for name, cfg in configs.items()
    }
    multiaug = (("joco", "jccm"), 2)
    assert facts["trs"] == ("trs", ("standard",), 1) and facts["trs_m1"] == ("trs", ("joco",), 1)
    assert facts["trs_multiaug"] == ("trs", *multiaug) and facts["mean_teacher_multiaug"] == ("mean_teacher", *multiaug)
    assert facts["dual"] == ("dual", ("standard",), 1) and facts["dual_multiaug"] == ("dual", *multiaug)
    assert configs["trs_multiaug"].train.keypoint_mix.enabled, "TRS keeps its own parts"
    assert {"trs_m1", "trs_multiaug", "mean_teacher_multiaug", "dual"} <= set(ssl_gain.VARIANTS) - set(
        ssl_gain.OPT_IN_VARIANTS
    )


@pytest.mark.slow
def test_toy_benchmark_trains_the_multiaug_and_dual_variants(tmp_path: Path):
    ssl_gain = _load_benchmark()
    work = tmp_path / "bench"
    variants = "trs_m1,trs_multiaug,mean_teacher_multiaug,dual"
    ssl_gain.main(["--work-dir", str(work), "--variants", variants, *TOY])
    stored = json.loads((work / "results.json").read_text())
    runs = stored["runs"]
    assert sorted(runs) == sorted(variants.split(","))
    assert stored["test"] == {"test_images": 300, "test_seed": 1000}
    assert all({"AP", "test_AP", "test_AR"} <= set(run["0"]) for run in runs.values())
    assert all(0.0 <= r["0"]["AP"] <= 1.0 for r in runs.values())
    dual = load_checkpoint(latest_checkpoint(work / "checkpoints" / "dual" / "seed0"))
    assert dual["config"]["train"]["method"] == "dual" and dual["dual"]["registered"] in (0, 1)
    multiaug = load_checkpoint(latest_checkpoint(work / "checkpoints" / "trs_multiaug" / "seed0"))
    assert multiaug["config"]["train"]["consistency"]["hard_views"] == 2
    assert any("loss/cons_teacher_p1" in row for row in multiaug["history"])


@pytest.mark.slow
def test_toy_benchmark_scores_each_variant_caches_it_and_refuses_other_settings(tmp_path: Path):
    ssl_gain = _load_benchmark()
    work = tmp_path / "bench"
    variants = "supervised,supervised_mfl,trs,supervised_full"
    table = ssl_gain.main(
        ["--work-dir", str(work), "--variants", variants, "--markdown-out", str(tmp_path / "t.md"), *TOY]
    )

    stored = json.loads((work / "results.json").read_text())
    assert sorted(stored["runs"]) == sorted(variants.split(","))
    for variant, runs in stored["runs"].items():
        assert set(runs) == {"0"}, variant
        assert 0.0 <= runs["0"]["AP"] <= 1.0 and runs["0"]["train_minutes"] > 0
    manifest = json.loads((work / "splits" / "frac0.3-seed0" / "manifest.json").read_text())
    assert manifest["data_config"]["synthetic"] == {
        "num_train_images": 10,
        "num_val_images": 3,
        "seed": 0,
        "image_size": [96, 128],
        "style": "easy",
    }
    assert manifest["counts"]["labeled"]["images"] == 3 and manifest["counts"]["holdout"]["images"] == 2
    caption, summary, per_seed = table.split("\n\n")
    for section in (summary, per_seed):
        rows = [line for line in section.splitlines()[2:]]
        assert [row.split("|")[1].strip() for row in rows] == variants.split(",")
    assert (tmp_path / "t.md").read_text().strip() == table.strip()

    # a rerun with the same settings trains nothing (a run that trained would write new checkpoints)
    before = {p: p.stat().st_mtime_ns for p in work.rglob("*.pt")}
    assert ssl_gain.main(["--work-dir", str(work), "--variants", variants, *TOY]) == table
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*.pt")} == before

    with pytest.raises(SystemExit):
        ssl_gain.main(["--work-dir", str(work), "--variants", "supervised", *TOY, "--iterations", "5"])


@pytest.mark.slow
def test_an_edited_recipe_does_not_reuse_cached_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    ssl_gain = _load_benchmark()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(Path(ssl_gain.CPU_RECIPE).read_text())
    command = ["--work-dir", str(tmp_path / "bench"), "--variants", "supervised", "--config", str(recipe), *TOY]
    ssl_gain.main(command)
    recipe.write_text(recipe.read_text().replace("lr: 0.006", "lr: 0.003"))
    with pytest.raises(SystemExit):
        ssl_gain.main(command)
    assert "other settings (config_sha256)" in capsys.readouterr().err


@pytest.mark.slow
def test_jobs_train_in_child_processes_and_match_in_process_runs(tmp_path: Path):
    ssl_gain = _load_benchmark()
    variants = "supervised,trs"
    children = tmp_path / "children"
    ssl_gain.main(["--work-dir", str(children), "--variants", variants, "--jobs", "2", "--threads", "1", *TOY])
    threads = torch.get_num_threads()
    try:
        ssl_gain.main(["--work-dir", str(tmp_path / "serial"), "--variants", variants, "--threads", "1", *TOY])
        assert torch.get_num_threads() == 1, "--threads holds with --jobs 1 too"
    finally:
        torch.set_num_threads(threads)

    in_children = json.loads((children / "results.json").read_text())["runs"]
    in_process = json.loads((tmp_path / "serial" / "results.json").read_text())["runs"]
    for variant in variants.split(","):
        assert {k: v for k, v in in_children[variant]["0"].items() if k != "train_minutes"} == {
            k: v for k, v in in_process[variant]["0"].items() if k != "train_minutes"
        }, variant
        assert (children / "logs" / f"{variant}-seed0.log").is_file()


@pytest.mark.slow
def test_a_failed_child_names_its_log_and_stores_nothing(tmp_path: Path):
    ssl_gain = _load_benchmark()
    work = tmp_path / "bench"
    with pytest.raises(
        SystemExit, match=r"supervised seed 0 failed \(exit code [1-9]\d*\); see .*supervised-seed0\.log"
    ):
        ssl_gain.main(
            ["--work-dir", str(work), "--variants", "supervised", "--jobs", "2", *TOY, "--set", "train.no_such_field=1"]
        )
    assert "no_such_field" in (work / "logs" / "supervised-seed0.log").read_text()
    assert not (work / "results.json").exists()
