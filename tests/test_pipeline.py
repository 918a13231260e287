"""The whole ZenML pipeline against real SeaweedFS and MLflow servers, on tiny synthetic data."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from components.config import load_config
from tests.service_fixtures import unique_name

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zenml_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("zenml")
    os.environ["ZENML_CONFIG_PATH"] = str(home)
    return home


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
    zenml_home: Path, synthetic_root: Path, mlflow_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.registry.registry import CHALLENGER, CHAMPION, TAG_AP, TAG_DECISION
    from components.storage.s3 import S3Uri, iter_objects
    from pipelines.runner import run_training_pipeline

    monkeypatch.chdir(tmp_path)
    model_name = unique_name("pipeline")
    client = mlflow_server.client()
    with mlflow_server.s3.aws_env():
        good = tiny_config(synthetic_root, tmp_path, mlflow_server, model_name, ["train.iterations=60"])
        first = run_training_pipeline(good, run_name=unique_name("good"))

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
        assert any(key.endswith("sample_predictions.png") for key in keys)
        run = client.get_run(first.outputs["training"].mlflow_run_id)
        assert run.data.params["train.method"] == "trs"
        assert not any("secret" in key.lower() for key in run.data.params)

        worse = tiny_config(
            synthetic_root, tmp_path, mlflow_server, model_name, ["train.iterations=1", "train.lr=1.0e-9"]
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
    reports = list((tmp_path / "cache").glob("*.validation/train/report.json"))
    assert reports and json.loads(reports[0].read_text())["ok"] is False

    from zenml.client import Client

    kept = Client().get_artifact_version("failed_validation_report").load()
    assert not kept.ok and any("keypoints.visibility" in line for line in kept.violations)
