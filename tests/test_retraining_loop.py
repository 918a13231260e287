"""The loop a schedule runs, end to end on real S3, MLflow and ZenML servers: a run registers a champion and
leaves a "label these next" list; `--if-changed` on the same inputs ends after the split and registers
nothing (skipped, exit 0); new raw unlabeled images (boxed by the pipeline's detector step) make the
next one train again, warm-started from the champion, with its lineage saying so."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli_process import trs_pose
from tests.service_fixtures import MLflowService, unique_name

pytestmark = pytest.mark.slow


def test_schedule_skips_unchanged_inputs_and_warm_starts_on_new_ones(
    zenml_home: Path, mlflow_server: MLflowService, tmp_path: Path
) -> None:
    from zenml.client import Client

    from components.data.synthetic import generate_dataset
    from components.registry.changes import TAG_INIT, TAG_INPUTS

    data, raw = tmp_path / "people", tmp_path / "raw"
    generate_dataset(data, 24, 8, seed=6, image_size=(128, 160), workers=1, style="easy")
    generate_dataset(tmp_path / "more", 6, 1, seed=9, image_size=(128, 160), workers=1, style="easy")
    (tmp_path / "more" / "train").rename(raw)
    model = unique_name("loop")
    s3 = mlflow_server.s3
    env = {**s3.environment(), "ZENML_CONFIG_PATH": str(zenml_home), "TRS_POSE_STATE_DIR": str(tmp_path / "state")}
    settings = [
        f"name={model}", f"data.root={data}", "data.synthetic=null", f"data.cache_dir={tmp_path / 'cache'}",
        "data.labeled_fraction=0.5", "data.holdout_labeled=3", "input.image_size=[64, 48]", "model.backbone=resnet10t",
        "model.deconv_channels=16", "train.batch_size=4", "train.unlabeled_batch_size=4", "train.num_workers=0",
        "train.warmup_iters=1", "train.log_every=2", "train.reviewer.check_every=2", "train.iterations=4",
        "train.checkpoint.every=4", f"train.checkpoint.dir=s3://{s3.bucket}/{model}/checkpoints", "eval.batch_size=8",
        "eval.num_workers=0", f"registry.experiment={model}", f"registry.model_name={model}", "registry.onnx=false",
        "suggest.budget=3",
    ]  # fmt: skip
    flags = ["--tracking-uri", mlflow_server.tracking_uri, "--endpoint-url", s3.endpoint_url]

    def run(name: str, *extra: str, if_changed: bool = False) -> subprocess.CompletedProcess[str]:
        args = [arg for setting in [*settings, *extra] for arg in ("--set", setting)]
        return trs_pose(
            ["run", "--run-name", name, *(["--if-changed"] if if_changed else []), *flags, *args], tmp_path, env
        )

    first = run(f"{model}-a")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "suggest: 3 images to label next (teacher_reviewer_disagreement)" in first.stdout, first.stdout
    client = mlflow_server.client()
    v1 = client.get_model_version(model, "1")
    assert v1.tags[TAG_INIT] == "scratch" and len(v1.tags[TAG_INPUTS]) == 64
    logged = {f.path for f in client.list_artifacts(v1.run_id, "suggestions")}
    assert logged == {"suggestions/pre_annotations.json", "suggestions/scores.csv", "suggestions/images.txt"}
    with s3.aws_env():
        suggestions = Client().get_pipeline_run(f"{model}-a").steps["suggest_next_labels"].outputs["label_suggestions"]
        assert len(suggestions[0].load().images) == 3

    same = run(f"{model}-b", if_changed=True)
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr[-3000:]
    assert f"nothing new since v1 (fingerprint {v1.tags[TAG_INPUTS][:12]})" in same.stdout
    assert "train: skipped" in same.stdout and "register: skipped: nothing registered" in same.stdout
    assert [v.version for v in client.search_model_versions(f"name = '{model}'")] == ["1"]
    skipped_run = Client().get_pipeline_run(f"{model}-b")
    assert str(skipped_run.status) == "completed" and "skipped" in {tag.name for tag in skipped_run.tags}
    listing = trs_pose(["runs", "list"], tmp_path, env)
    assert any(f"{model}-b" in line and "skipped" in line for line in listing.stdout.splitlines()), listing.stdout

    import torch

    from components.serving.detector import build_detector

    torch.manual_seed(0)  # a random detector: the step's plumbing, not its boxes, is under test here
    weights = tmp_path / "detector.pth"
    torch.save(build_detector("fasterrcnn_mobilenet_v3_large_320_fpn").state_dict(), weights)
    detector = [
        f"data.unlabeled.images=[{raw}]", "data.unlabeled.boxes=detector", f"data.unlabeled.detector.weights={weights}",
        "data.unlabeled.detector.arch=fasterrcnn_mobilenet_v3_large_320_fpn", "data.unlabeled.detector.min_score=0.0",
    ]  # fmt: skip
    new = run(f"{model}-c", *detector, "train.init=champion", if_changed=True)
    assert new.returncode == 0, new.stdout[-3000:] + new.stderr[-3000:]
    assert f"train: 4 steps from models:/{model}/1" in new.stdout, new.stdout
    v2 = client.get_model_version(model, "2")
    assert v2.tags[TAG_INIT] == f"models:/{model}/1" and v2.tags[TAG_INPUTS] != v1.tags[TAG_INPUTS]
    assert client.get_run(v2.run_id).data.tags[TAG_INIT] == f"models:/{model}/1"
    with s3.aws_env():
        manifest = Client().get_pipeline_run(f"{model}-c").steps["split_data"].outputs["split_manifest"][0].load()
    assert manifest["counts"]["pool"]["images"] == 6 and manifest["unlabeled_sources"]["sources"][0]["files"] == 6
    boxes = manifest["unlabeled_sources"]["boxes"]
    assert (
        boxes["box_source"] == "detector" and len(boxes["weights_sha256"]) == 64 and "pool_boxes" in manifest["inputs"]
    )
    assert "boxes: " in new.stdout and "(detector)" in new.stdout
