"""The whole ZenML pipeline against real SeaweedFS, MLflow and ZenML servers, on tiny synthetic data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.config import load_config
from components.services.seaweedfs import S3Endpoint
from components.services.zenml_server import ZenMLEndpoint
from tests.service_fixtures import MLflowService, unique_name

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[1]


LOAD_BY_RUN_NAME = """
import json, sys
from zenml.client import Client
from zenml.utils import source_utils
source_utils.set_custom_source_root(sys.argv[2])  # where the artifacts' pydantic classes are defined
run = Client().get_pipeline_run(sys.argv[1])
manifest = run.steps["split_data"].outputs["split_manifest"][0]
report = run.steps["validate_data"].outputs["validation_report"][0]
print(json.dumps({"manifest": manifest.load(), "manifest_uri": manifest.uri,
                  "report": report.load().model_dump(), "report_uri": report.uri}))
"""


def load_from_fresh_client(
    run_name: str, zenml_server: ZenMLEndpoint, s3: S3Endpoint, config_dir: Path
) -> dict[str, Any]:
    """A second process with an empty ZenML config that knows only the server and the bucket."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "AWS_", "MLFLOW_"))}
    env.update({"ZENML_CONFIG_PATH": str(config_dir), "ZENML_ANALYTICS_OPT_IN": "false", **zenml_server.environment()})
    env.update(s3.environment())
    done = subprocess.run(
        [sys.executable, "-c", LOAD_BY_RUN_NAME, run_name, str(REPO_ROOT)],
        env=env,
        cwd=config_dir.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from components.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, 40, 12, seed=3, image_size=(160, 192))
    return root


def tiny_config(root: Path, work: Path, mlflow_server, model_name: str, overrides: list[str]):  # type: ignore[no-untyped-def]
    base = [
        f"data.root={root}",
        "data.synthetic=null",
        f"data.cache_dir={work / 'cache'}",
        "data.labeled_fraction=0.5",
        "data.holdout_labeled=4",
        "input.image_size=[64, 48]",
        "input.sigma=1.0",
        "model.deconv_layers=3",
        "model.deconv_channels=32",
        "train.method=trs",
        "train.batch_size=8",
        "train.unlabeled_batch_size=8",
        "train.num_workers=0",
        "train.lr=0.003",
        "train.warmup_iters=5",
        "train.log_every=10",
        "train.reviewer.check_every=20",
        "train.consistency.rampup_iters=10",
        "train.ema.warmup_iters=10",
        f"train.checkpoint.dir=s3://{mlflow_server.s3.bucket}/{model_name}/checkpoints",
        "train.checkpoint.every=20",
        f"registry.tracking_uri={mlflow_server.tracking_uri}",
        f"registry.experiment={model_name}",
        f"registry.model_name={model_name}",
        f"storage.endpoint_url={mlflow_server.s3.endpoint_url}",
        f"storage.bucket={mlflow_server.s3.bucket}",
        "eval.batch_size=16",
    ]
    return load_config(None, base + overrides)


def test_pipeline_registers_promotes_and_guards_champion(
    zenml_home: Path,
    synthetic_root: Path,
    mlflow_server: MLflowService,
    zenml_server: ZenMLEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from components.registry.lifecycle import CHALLENGER, CHAMPION, TAG_AP, TAG_DECISION
    from components.storage.s3 import S3Uri, iter_objects
    from pipelines.runner import run_training_pipeline

    monkeypatch.chdir(tmp_path)
    model_name = unique_name("pipeline")
    client = mlflow_server.client()
    with mlflow_server.s3.aws_env():
        good = tiny_config(synthetic_root, tmp_path, mlflow_server, model_name, ["train.iterations=60"])
        first = run_training_pipeline(good, run_name=unique_name("good"))
        assert first.dashboard_url and first.dashboard_url.startswith(os.environ["ZENML_STORE_URL"])

        fresh = tmp_path / "fresh-zenml-config"
        loaded = load_from_fresh_client(first.run_name, zenml_server, mlflow_server.s3, fresh)
        stored_here = [p for p in fresh.rglob("*") if p.is_file() and (p.suffix == ".db" or "local_stores" in p.parts)]
        assert not stored_here, f"the second client must not have a store of its own: {stored_here}"
        zenml_prefix = f"s3://{mlflow_server.s3.bucket}/zenml/"
        assert loaded["manifest_uri"].startswith(zenml_prefix) and loaded["report_uri"].startswith(zenml_prefix)
        manifest = json.loads(Path(first.outputs["split"].manifest).read_text())
        assert loaded["manifest"] == manifest
        assert loaded["report"] == first.outputs["validation_report"].model_dump() and loaded["report"]["ok"]

        metrics = first.outputs["metrics"].metrics
        assert set(metrics) >= {"AP", "AP50", "AP75", "APm", "APl", "AR"}
        version = first.outputs["model_version"]
        assert version.version == "1"
        assert first.outputs["promotion"].promoted, first.outputs["promotion"].reason
        champion = client.get_model_version_by_alias(model_name, CHAMPION)
        challenger = client.get_model_version_by_alias(model_name, CHALLENGER)
        assert champion.version == challenger.version == "1"
        assert float(champion.tags[TAG_AP]) == pytest.approx(metrics["AP"])
        assert champion.tags[TAG_DECISION] == "promoted"

        keys = [obj["Key"] for obj in iter_objects(mlflow_server.s3.client(), S3Uri(mlflow_server.s3.bucket, ""))]
        assert any(key.endswith(".pt") and "/checkpoints/" in key for key in keys), "checkpoints not on S3"
        assert any("MLmodel" in key for key in keys), "the logged model is not in the bucket"
        for figure in ("training_curves", "challenger_vs_champion", "per_joint_accuracy", "joint_errors"):
            assert any(key.endswith(f"plots/{figure}.png") for key in keys), figure
        assert any(key.endswith("plots/predictions_vs_truth.png") for key in keys)
        assert any(key.endswith("evaluation/val_results.json") for key in keys)  # what a later run compares with
        run = client.get_run(first.outputs["training"].mlflow_run_id)
        assert run.data.params["train.method"] == "trs"
        assert not any("secret" in key.lower() for key in run.data.params)

        worse = tiny_config(
            synthetic_root,
            tmp_path,
            mlflow_server,
            model_name,
            ["train.iterations=1", "train.lr=1.0e-9", "registry.onnx=false"],
        )
        second = run_training_pipeline(worse, run_name=unique_name("worse"))
        assert second.outputs["metrics"].metrics["AP"] <= metrics["AP"]
        assert second.outputs["model_version"].version == "2"
        assert not second.outputs["promotion"].promoted
        assert client.get_model_version_by_alias(model_name, CHAMPION).version == "1"
        assert client.get_model_version_by_alias(model_name, CHALLENGER).version == "2"
        assert client.get_model_version(model_name, "2").tags[TAG_DECISION] != "promoted"


def test_invalid_data_stops_before_training_and_registers_nothing(
    zenml_home: Path, synthetic_root: Path, mlflow_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException

    from pipelines.runner import run_training_pipeline

    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_root, broken)
    ann_file = broken / "annotations" / "person_keypoints_train.json"
    coco = json.loads(ann_file.read_text())
    coco["annotations"][0]["keypoints"][2] = 7  # visibility outside {0, 1, 2}
    ann_file.write_text(json.dumps(coco))

    model_name = unique_name("invalid")
    cfg = tiny_config(broken, tmp_path, mlflow_server, model_name, ["train.iterations=5"])
    with mlflow_server.s3.aws_env(), pytest.raises(RuntimeError, match="validate_data"):
        run_training_pipeline(cfg, run_name=unique_name("invalid"))
    client = mlflow_server.client()
    with pytest.raises(MlflowException):
        client.get_registered_model(model_name)
    assert client.get_experiment_by_name(model_name) is None, "training started on invalid data"
    reports = list((tmp_path / "cache" / "validation").glob("*/train/report.json"))
    assert reports and json.loads(reports[0].read_text())["ok"] is False

    from zenml.client import Client

    kept = Client().get_artifact_version("failed_validation_report").load()
    assert not kept.ok and any("keypoints.visibility" in line for line in kept.violations)
