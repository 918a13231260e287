"""The README's "Your own data" example, end to end on a tiny budget: a COCO file with its own 13-keypoint
set plus a folder of raw images, through `trs-pose run` (real S3, MLflow and ZenML servers), the
registered version, `predict` and `export` (ONNX keypoints [N, K, 3])."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from examples.own_data.make_stand_in import HEAD13, make_stand_in
from tests.cli_process import REPO_ROOT, trs_pose
from tests.service_fixtures import MLflowService, unique_name

pytestmark = pytest.mark.slow
TINY = [
    "input.image_size=[64, 48]",
    "model.deconv_channels=16",
    "train.iterations=8",
    "train.batch_size=4",
    "train.unlabeled_batch_size=4",
    "train.warmup_iters=2",
    "train.log_every=4",
    "train.reviewer.check_every=4",
    "train.consistency.burn_in_iters=4",
    "train.consistency.rampup_iters=2",
    "train.ema.warmup_iters=2",
    "train.checkpoint.every=4",
    "data.holdout_labeled=4",
    "eval.batch_size=8",
]


def test_own_keypoint_set_and_raw_images_run_register_predict_and_export(
    zenml_home: Path, mlflow_server: MLflowService, tmp_path: Path
) -> None:
    import onnxruntime as ort

    work = tmp_path / "work"
    stand_in = make_stand_in(work / "data" / "own", labeled=24, val=10, raw=16, seed=3)
    before = {p: p.stat().st_mtime_ns for p in stand_in.rglob("*")}
    model = unique_name("own-data")
    env = {
        **mlflow_server.s3.environment(),
        "ZENML_CONFIG_PATH": str(zenml_home),
        "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
        "TRS_POSE_STATE_DIR": str(tmp_path / "state"),
    }
    settings = [
        *TINY,
        f"data.cache_dir={tmp_path / 'cache'}",
        f"train.checkpoint.dir=s3://{mlflow_server.s3.bucket}/{model}/checkpoints",
        f"registry.tracking_uri={mlflow_server.tracking_uri}",
        f"registry.experiment={model}",
        f"registry.model_name={model}",
        f"storage.endpoint_url={mlflow_server.s3.endpoint_url}",
        f"storage.bucket={mlflow_server.s3.bucket}",
    ]
    run = trs_pose(
        [
            "run",
            "--config",
            str(REPO_ROOT / "configs" / "own_data.yaml"),
            "--no-local-services",
            "--run-name",
            model,
            *(arg for setting in settings for arg in ("--set", setting)),
        ],  # fmt: skip
        work,
        env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in stand_in.rglob("*")} == before, "the user's files were touched"

    client = mlflow_server.client()
    version = client.get_model_version_by_alias(model, "champion")
    assert version.tags["keypoints.count"] == "13" and version.tags["keypoints.names"] == ",".join(HEAD13)
    run_id = version.run_id
    keypoints_file = Path(client.download_artifacts(run_id, "keypoints/keypoints.json", str(tmp_path / "dl")))
    recorded = json.loads(keypoints_file.read_text())
    assert recorded["category"] == "worker" and recorded["sigma_source"] == "default"
    assert recorded["flip_pairs"][0] == [1, 2]  # l_shoulder, r_shoulder: derived from the names

    from zenml.client import Client

    with mlflow_server.s3.aws_env():  # the artifacts are on S3
        steps = Client().get_pipeline_run(model).steps
        manifest = steps["split_data"].outputs["split_manifest"][0].load()
        boxes = steps["find_subject_boxes"].outputs["subject_box_records"][0].load()
    assert (
        manifest["counts"]["pool"]["images"] == 16
        and manifest["unlabeled_sources"]["boxes"]["box_source"] == "whole_image"
    )
    assert len(boxes) == 16

    image = sorted((stand_in / "raw").glob("*.jpg"))[0]
    predicted = trs_pose(
        [
            "predict",
            "--model",
            f"models:/{model}@champion",
            "--image",
            str(image),
            "--out-json",
            "kp.json",
            "--out-image",
            "kp.png",
        ],  # fmt: skip
        work,
        env,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    document: dict[str, Any] = json.loads((work / "kp.json").read_text())
    assert document["keypoint_names"] == list(HEAD13) and len(document["people"][0]["keypoints"]) == 13
    assert (work / "kp.png").is_file()

    exported = trs_pose(["export", "--model", f"models:/{model}@champion", "--out", "exported/own/"], work, env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    session = ort.InferenceSession(str(work / "exported" / "own" / "model.onnx"), providers=["CPUExecutionProvider"])
    pixels = np.zeros((120, 90, 3), np.uint8)
    out = session.run(None, {"image": pixels, "boxes": np.array([[0, 0, 90, 120], [10, 10, 40, 60]], np.float32)})[0]
    assert out.shape == (2, 13, 3)

    coco_val = tmp_path / "coco-val.json"  # the validation people in COCO's 17: not this model's set
    from components.keypoints import COCO_PERSON

    val = json.loads((stand_in / "labels" / "val.json").read_text())
    val["categories"] = [COCO_PERSON.coco_category()]
    for ann in val["annotations"]:
        ann["keypoints"], ann["num_keypoints"] = [0] * 51, 0
    coco_val.write_text(json.dumps(val))
    refused = trs_pose(
        [
            "evaluate",
            "--model",
            f"models:/{model}@champion",
            "--ann",
            str(coco_val),
            "--images",
            str(stand_in / "labels" / "images"),
        ],  # fmt: skip
        work,
        env,
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "its keypoints are not the model's 13 keypoints (head, l_shoulder" in refused.stderr
