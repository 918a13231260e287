"""The MLflow registry against real servers: versions, aliases, tags, promotion, rollback, failures."""

from __future__ import annotations

import re
from typing import NamedTuple

import pytest
import torch
from torch import nn

from components.config import load_config
from components.registry.lifecycle import (
    CHALLENGER,
    CHAMPION,
    RESULTS_FOLDER,
    TAG_AP,
    TAG_DECISION,
    TAG_ONNX,
    TAG_REASON,
    TAG_VAL_FINGERPRINT,
    RegistryError,
    _delete_abandoned_versions,
    champion_validation,
    current_champion,
    decide_promotion,
    list_versions,
    promote,
    register_student,
    rollback,
)
from components.registry.model_logging import ONNX_ARTIFACT_DIR
from components.registry.run_logging import flatten_params, redact
from tests.service_fixtures import unique_name

VAL_A = "a" * 64
VAL_B = "b" * 64


class TinyOutput(NamedTuple):
    heatmaps: torch.Tensor
    aux: list[torch.Tensor]


class TinyPoseNet(nn.Module):
    """Stands in for PoseNet: same output type, 17 heatmaps at stride 4."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 17, kernel_size=4, stride=4)

    def forward(self, images: torch.Tensor) -> TinyOutput:
        return TinyOutput(self.head(images), [])


def tiny_config(model_name: str, onnx: bool = False):
    """Registrations here skip the ONNX export (seconds each) unless a test checks it."""
    return load_config(
        None,
        [
            f"registry.model_name={model_name}",
            f"registry.experiment={model_name}",
            "registry.promotion_margin=0.01",
            "input.image_size=[32, 24]",
            f"registry.onnx={str(onnx).lower()}",
        ],
    )


def test_decide_promotion_rules():
    assert decide_promotion(0.3, VAL_A, None, None, 0.0) == (True, "no champion yet")
    assert decide_promotion(0.62, VAL_A, 0.60, VAL_A, 0.01)[0] is True
    assert decide_promotion(0.605, VAL_A, 0.60, VAL_A, 0.01)[0] is False
    assert decide_promotion(0.60, VAL_A, 0.60, VAL_A, 0.0)[0] is False
    promoted, reason = decide_promotion(0.99, VAL_B, 0.10, VAL_A, 0.0)
    assert not promoted and "validation sets differ" in reason


def test_redact_drops_credentials_and_url_passwords():
    tree = {
        "storage": {"endpoint_url": "http://user:pw@minio:9000", "secret_key": "s", "bucket": "b"},
        "aws_access_key_id": "k",
    }
    clean = redact(tree)
    assert clean == {"storage": {"endpoint_url": "http://minio:9000", "bucket": "b"}}
    assert flatten_params({"train": {"lr": 0.1, "strides": [8, 16]}}) == {"train.lr": "0.1", "train.strides": "[8, 16]"}


def test_register_creates_challenger_with_tags_and_artifacts_in_bucket(mlflow_server, tmp_path):
    from components.reporting.canvas import save_figure
    from components.reporting.metric_comparison import METRICS, metric_comparison_figure

    name = unique_name("reg")
    cfg = tiny_config(name, onnx=True)
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"labeled": [1, 2]}')
    results = tmp_path / "val_results.json"
    results.write_text('[{"image_id": 1, "category_id": 1, "keypoints": [], "score": 1.0}]')
    plots = [save_figure(metric_comparison_figure(dict.fromkeys(METRICS, 0.5)), tmp_path / "ap.png")]
    torch.manual_seed(0)
    registered = register_student(
        TinyPoseNet(),
        cfg,
        {"AP": 0.5, "AP50": 0.8},
        VAL_A,
        split_manifest=manifest,
        plots=plots,
        artifacts={RESULTS_FOLDER: results},
        tracking_uri=mlflow_server.tracking_uri,
    )
    client = mlflow_server.client()
    version = client.get_model_version(name, registered.version)
    assert version.tags[TAG_AP] == "0.5" and version.tags[TAG_VAL_FINGERPRINT] == VAL_A
    assert client.get_model_version_by_alias(name, CHALLENGER).version == registered.version
    assert current_champion(client, name) is None, "registration must never move champion"

    run = client.get_run(registered.run_id)
    assert run.data.params["train.method"] == "trs"
    assert run.data.metrics["val.AP"] == 0.5
    assert "code.package_version" in run.data.tags

    s3 = mlflow_server.s3.client()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=mlflow_server.s3.bucket, Prefix="mlflow/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]  # the session's server holds > 1,000
    run_keys = [k for k in keys if registered.run_id in k]
    for expected in ("config/resolved.yaml", "split/manifest.json", "plots/ap.png", "evaluation/val_results.json"):
        assert any(k.endswith(expected) for k in run_keys), (expected, run_keys)
    assert any(k.endswith("/MLmodel") for k in keys) and any(k.endswith(".pth") or "data/" in k for k in keys)

    assert any(k.endswith(f"{ONNX_ARTIFACT_DIR}/model.onnx") for k in run_keys)
    assert version.tags[TAG_ONNX] == f"runs:/{registered.run_id}/{ONNX_ARTIFACT_DIR}/model.onnx"

    # once champion, a later run compares against its metrics, and per joint only on the same validation set
    promote(client, name, registered.version, margin=0.0)
    champion = current_champion(client, name)
    metrics, kept = champion_validation(client, champion, VAL_A, tmp_path / "champion")
    assert metrics == {"AP": 0.5, "AP50": 0.8}
    assert kept is not None and kept.read_text() == results.read_text()
    assert champion_validation(client, champion, VAL_B, tmp_path / "other") == (metrics, None)

    import mlflow.models

    with mlflow_server.use():  # the whole predictor: image + boxes in, keypoints out (tests/test_serving_registry.py)
        signature = mlflow.models.get_model_info(registered.model_uri).signature
    assert signature.inputs.input_names() == ["image", "pixels", "boxes", "scores"]
    assert signature.outputs.input_names() == ["keypoints", "scores", "boxes", "box_source"]


@pytest.fixture(scope="module")
def versioned_model(mlflow_server):
    """Four versions: AP 0.50, 0.60 and 0.605 on val set A, and 0.90 on a different val set B."""
    name = unique_name("promo")
    cfg = tiny_config(name)
    model = TinyPoseNet()
    versions = [
        register_student(model, cfg, {"AP": ap}, fingerprint, tracking_uri=mlflow_server.tracking_uri).version
        for ap, fingerprint in ((0.50, VAL_A), (0.60, VAL_A), (0.605, VAL_A), (0.90, VAL_B))
    ]
    return name, versions


def test_promotion_moves_champion_only_when_better_on_the_same_val_set(mlflow_server, versioned_model):
    name, (v1, v2, v3, v4) = versioned_model
    client = mlflow_server.client()
    assert client.get_model_version_by_alias(name, CHALLENGER).version == v4

    first = promote(client, name, v1, margin=0.01)
    assert first.promoted and first.reason == "no champion yet"
    assert promote(client, name, v2, margin=0.01).promoted
    assert current_champion(client, name).version == v2
    assert client.get_model_version(name, v2).tags[TAG_DECISION] == "promoted"

    worse = promote(client, name, v3, margin=0.01)
    assert not worse.promoted and current_champion(client, name).version == v2
    tags = client.get_model_version(name, v3).tags
    assert tags[TAG_DECISION] == "kept champion" and "does not beat" in tags[TAG_REASON]
    assert tags["promotion.champion_ap"] == "0.6"

    other_val = promote(client, name, v4, margin=0.01)
    assert not other_val.promoted and current_champion(client, name).version == v2
    assert "validation sets differ" in client.get_model_version(name, v4).tags[TAG_REASON]

    forced = promote(client, name, v4, margin=0.01, force=True)
    assert forced.promoted and forced.decision == "forced" and current_champion(client, name).version == v4

    assert rollback(client, name) == (v4, v2)
    assert current_champion(client, name).version == v2
    assert rollback(client, name) == (v2, v1)
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback(client, name)

    summary = {row.version: row for row in list_versions(client, name)}
    assert summary[v1].aliases == (CHAMPION,) and summary[v4].aliases == (CHALLENGER,)
    assert [row.version for row in list_versions(client, name)] == [v4, v3, v2, v1]


def test_failed_registration_leaves_no_version_and_keeps_champion(mlflow_server, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    name = unique_name("fail")
    cfg = tiny_config(name)
    client = mlflow_server.client()
    good = register_student(TinyPoseNet(), cfg, {"AP": 0.4}, VAL_A, tracking_uri=mlflow_server.tracking_uri)
    promote(client, name, good.version, margin=0.0)

    with pytest.raises(RegistryError, match="does not exist"):
        register_student(
            TinyPoseNet(),
            cfg,
            {"AP": 0.9},
            VAL_A,
            plots=[tmp_path / "missing.png"],
            tracking_uri=mlflow_server.tracking_uri,
        )

    def crash(*args, **kwargs):
        raise ConnectionError("registry went away mid-registration")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", crash)
    with pytest.raises(ConnectionError):
        register_student(TinyPoseNet(), cfg, {"AP": 0.9}, VAL_A, tracking_uri=mlflow_server.tracking_uri)
    monkeypatch.undo()

    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == [good.version]
    assert current_champion(client, name).version == good.version
    assert client.get_model_version_by_alias(name, CHALLENGER).version == good.version

    failed_run = client.create_run(client.get_experiment_by_name(name).experiment_id)
    client.set_terminated(failed_run.info.run_id, status="FAILED")
    with pytest.raises(RegistryError, match="failed run"):
        register_student(
            TinyPoseNet(),
            cfg,
            {"AP": 0.9},
            VAL_A,
            run_id=failed_run.info.run_id,
            tracking_uri=mlflow_server.tracking_uri,
        )
    assert len(client.search_model_versions(f"name = '{name}'")) == 1

    good_version = client.get_model_version(name, good.version)
    killed = client.create_model_version(  # what a registration killed by SIGKILL leaves behind
        name,
        source=good_version.source,
        run_id=good.run_id,
        model_id=good_version.source.rsplit("/", 1)[-1],
        tags={"registration.status": "pending", TAG_AP: "0.99"},
    )
    with pytest.raises(RegistryError, match="unfinished registration"):
        promote(client, name, killed.version, margin=0.0)
    assert _delete_abandoned_versions(client, name, older_than_s=0.0) == [str(killed.version)]

    training_run = client.create_run(client.get_experiment_by_name(name).experiment_id)
    client.log_param(training_run.info.run_id, "train.lr", "logged-differently-by-training")
    client.set_terminated(training_run.info.run_id, status="FINISHED")
    into_run = register_student(
        TinyPoseNet(),
        cfg,
        {"AP": 0.45},
        VAL_A,
        run_id=training_run.info.run_id,
        tracking_uri=mlflow_server.tracking_uri,
    )
    assert into_run.run_id == training_run.info.run_id
    assert client.get_run(into_run.run_id).data.params["train.lr"] == "logged-differently-by-training"
    assert client.get_run(into_run.run_id).info.status == "FINISHED"
    assert len(client.search_model_versions(f"name = '{name}'")) == 2


def test_run_holds_config_from_its_opening_and_validation_from_registration(mlflow_server):
    from components.registry.run_logging import CONFIG_ARTIFACT, TAG_METHOD, mlflow_run

    name = unique_name("once")
    cfg = tiny_config(name)
    client = mlflow_server.client()
    with mlflow_run(client, cfg, "training") as run_id:
        pass
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[TAG_METHOD] == "trs"
    assert "code.package_version" in run.data.tags
    assert len(run.data.params) > 100 and run.data.params["registry.model_name"] == name  # several log_batch calls
    assert [a.path for a in client.list_artifacts(run_id, "config")] == [CONFIG_ARTIFACT]

    register_student(
        TinyPoseNet(), cfg, {"AP": 0.5}, VAL_A, run_id=run_id, step=7, tracking_uri=mlflow_server.tracking_uri
    )
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val.AP")] == [(7, 0.5)]
    assert client.get_run(run_id).data.tags[TAG_VAL_FINGERPRINT] == VAL_A

    with pytest.raises(KeyboardInterrupt), mlflow_run(client, cfg, "interrupted") as failed_id:
        raise KeyboardInterrupt
    assert client.get_run(failed_id).info.status == "FAILED"


def test_metric_logger_writes_history(mlflow_server):
    from components.registry.run_logging import MLflowMetricLogger

    client = mlflow_server.client()
    experiment_id = client.create_experiment(unique_name("logger"))
    run_id = client.create_run(experiment_id).info.run_id
    logger = MLflowMetricLogger(run_id, client, prefix="train/")
    for step in range(3):
        logger.log_metrics({"loss": 1.0 / (step + 1), "lr": torch.tensor(0.1), "bad": float("nan"), "note": "x"}, step)
    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, round(m.value, 4)) for m in history] == [(0, 1.0), (1, 0.5), (2, 0.3333)]
    assert len(client.get_metric_history(run_id, "train/lr")) == 3
    assert client.get_metric_history(run_id, "train/bad") == []


def test_a_version_is_logged_as_code_not_as_a_pickle(mlflow_server, tmp_path):
    """MLflow's models-from-code: the version holds our module's file, which loading runs; no
    CloudPickle warning at registration, no pickled model in the version."""
    import logging
    from pathlib import Path

    import mlflow.artifacts

    name = unique_name("from-code")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("mlflow")
    logger.addHandler(handler)
    try:
        registered = register_student(
            TinyPoseNet(), tiny_config(name), {"AP": 0.3}, VAL_A, tracking_uri=mlflow_server.tracking_uri
        )
    finally:
        logger.removeHandler(handler)
    assert not [r.getMessage() for r in records if "CloudPickle" in r.getMessage()]
    client = mlflow_server.client()
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(name, registered.version),
            dst_path=str(tmp_path),
            tracking_uri=mlflow_server.tracking_uri,
        )
    )
    files = {path.name for path in local.iterdir()}
    assert "model_code.py" in files and "python_model.pkl" not in files, files
    assert "model_code_path" in (local / "MLmodel").read_text()


def test_models_cli_lists_promotes_and_rolls_back(mlflow_server):
    from click.testing import CliRunner

    from cli.main import cli

    name = unique_name("cli")
    cfg = tiny_config(name)
    versions = [
        register_student(TinyPoseNet(), cfg, {"AP": ap}, VAL_A, tracking_uri=mlflow_server.tracking_uri).version
        for ap in (0.3, 0.2, 0.5)
    ]
    runner = CliRunner(env=mlflow_server.s3.environment())  # S3 holds the registry lease
    common = ["--set", f"registry.model_name={name}", "--tracking-uri", mlflow_server.tracking_uri]

    assert runner.invoke(cli, ["models", "promote", versions[0], *common]).exit_code == 0
    worse = runner.invoke(cli, ["models", "promote", versions[1], *common])
    assert worse.exit_code == 1 and worse.stdout == ""  # the decision and its reason, on stderr
    assert worse.stderr.strip() == (
        f"Error: {name} version {versions[1]}: not promoted (kept champion): "
        "AP 0.2000 does not beat champion 0.3000 by more than 0.0000"
    )
    better = runner.invoke(cli, ["models", "promote", versions[2], *common])
    assert better.exit_code == 0 and "now champion" in better.output
    unknown = runner.invoke(cli, ["models", "promote", "99", *common])
    assert unknown.exit_code == 1 and unknown.stderr.strip() == (
        f"Error: {name} has no version 99; its versions are {', '.join(versions)}"
    )
    malformed = runner.invoke(cli, ["models", "promote", "v1", *common])
    assert malformed.exit_code == 2 and "'v1' is not a version number" in malformed.stderr
    assert "INVALID_PARAMETER_VALUE" not in malformed.output and "RESOURCE_DOES_NOT_EXIST" not in unknown.output

    listing = runner.invoke(cli, ["models", "list", *common])  # not a terminal: nothing is cut at 80 columns
    assert listing.exit_code == 0, listing.output
    champion_line = next(line for line in listing.output.splitlines() if "champion" in line and "0.5000" in line)
    assert champion_line.split()[1] == versions[2]
    assert "challenger" in listing.output and "…" not in listing.output
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", champion_line), champion_line
    # registered with registry.onnx=false: no model.onnx, no tag, and the ONNX column says so
    client = mlflow_server.client()
    champion = client.get_model_version(name, versions[2])
    assert TAG_ONNX not in champion.tags
    assert client.list_artifacts(champion.run_id, ONNX_ARTIFACT_DIR) == []
    assert "yes" not in listing.output

    back = runner.invoke(cli, ["models", "rollback", *common])
    assert back.exit_code == 0 and f"to version {versions[0]}" in back.output
    assert current_champion(client, name).version == versions[0]
    again = runner.invoke(cli, ["models", "rollback", *common])
    assert again.exit_code == 1 and "nothing to roll back" in again.output


def test_tracking_uri_comes_from_config_then_env_then_local_services(tmp_path, monkeypatch):
    from components.config import RegistryConfig
    from components.registry.mlflow_client import resolve_tracking_uri
    from components.services.process import ServiceError

    monkeypatch.setenv("TRS_POSE_STATE_DIR", str(tmp_path / "no-services"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert resolve_tracking_uri(RegistryConfig(tracking_uri="http://from-config:5000")) == "http://from-config:5000"
    assert resolve_tracking_uri(RegistryConfig()) == "http://from-env:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(ServiceError, match="services up"):
        resolve_tracking_uri(RegistryConfig())
