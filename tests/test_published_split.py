"""Training pods train on the pipeline's split: published to real S3, handed to the pod by the
launcher (stand-in API server, tests/k8s_standin.py), fetched and hash-checked by `trs-pose train`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from components.config import DataConfig, ExperimentConfig, load_config
from components.data.published_split import SPLIT_ENV, PublishedSplit, SplitIntegrityError, fetch_split, publish_split
from components.data.split import PoolInput, SplitFiles, coco_layout, make_split, sha256_file
from components.data.subject_boxes import whole_image_boxes
from components.data.unlabeled_pool import build_pool, check_pool
from components.kubernetes.launcher import KubernetesLauncher, LaunchError
from components.kubernetes.manifests import CONFIG_ANNOTATION, plan_run, render_pytorchjob, render_trainjob
from components.storage.s3 import S3Uri, put_bytes
from tests.k8s_standin import StandInApiServer
from tests.service_fixtures import unique_name

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SplitFiles]:
    from components.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic") / unique_name("fingerprint")
    generate_dataset(root, 12, 4, seed=1, image_size=(96, 96), workers=1)
    train_ann, train_images = coco_layout(root, "train")
    val_ann, val_images = coco_layout(root, "val")
    raw = root.parent / "raw"  # raw unlabeled images: the val images again, under other names
    raw.mkdir()
    for index, image in enumerate(sorted(val_images.glob("*.jpg"))):
        (raw / f"clip-{index}.jpg").write_bytes(image.read_bytes())
    data_cfg = DataConfig.model_validate(
        {"root": str(root), "labeled_fraction": 0.5, "holdout_labeled": 2, "unlabeled": {"images": [str(raw)]}}
    )
    pool = build_pool(data_cfg.unlabeled, root.parent / "cache")
    assert pool is not None
    usable = check_pool(pool, data_cfg.unlabeled, root.parent / "report").usable
    pool_input = PoolInput(pool, usable, whole_image_boxes(usable), {"box_source": "whole_image"})
    split = make_split(train_ann, train_images, val_ann, val_images, root.parent / "split", data_cfg, pool_input)
    return root, split


def pod_cfg(s3_server: Any, engine: str = "job") -> ExperimentConfig:
    return load_config(
        None,
        [
            "backend.kind=kubernetes",
            "backend.kubernetes.namespace=ml",
            f"backend.kubernetes.engine={engine}",
            "backend.kubernetes.config_error_exit_code=3",
            f"storage.bucket={s3_server.bucket}",
            f"storage.endpoint_url={s3_server.endpoint_url}",
        ],
    )


def test_published_split_round_trips_and_detects_every_changed_file(
    dataset: tuple[Path, SplitFiles], s3_server: Any, tmp_path: Path
) -> None:
    _, split = dataset
    published = publish_split(split, s3_server.client(), s3_server.bucket)
    manifest = json.loads(split.manifest.read_text())
    assert published.sha256["labeled.json"] == manifest["outputs"]["labeled_ann"]["sha256"]
    assert published.uri == f"s3://{s3_server.bucket}/splits/{sha256_file(split.manifest)}"

    assert published.sha256["unlabeled_pool.json"] == manifest["outputs"]["pool_ann"]["sha256"]

    fetched = fetch_split(published, tmp_path / "pod", s3_server.client())
    for name in ("labeled_ann", "unlabeled_ann", "holdout_ann", "val_ann", "manifest", "pool_ann"):
        assert getattr(fetched, name).read_bytes() == Path(getattr(split, name)).read_bytes(), name
    for folder in ("train_images", "pool_images"):
        local, pod = Path(getattr(split, folder)), getattr(fetched, folder)
        images = sorted(p.relative_to(local) for p in local.rglob("*.jpg"))
        assert images and sorted(p.relative_to(pod) for p in pod.rglob("*.jpg")) == images, folder

    pool_image = S3Uri.parse(published.images["pool_images"]).join("images/0/clip-0.jpg")
    original = s3_server.client().get_object(Bucket=pool_image.bucket, Key=pool_image.key)["Body"].read()
    put_bytes(s3_server.client(), pool_image, original[:-10])  # truncated after the pipeline checked it
    try:
        with pytest.raises(SplitIntegrityError, match="clip-0.jpg: sha256 [0-9a-f]{64}, the pipeline recorded"):
            fetch_split(published, tmp_path / "pod-pool", s3_server.client())
    finally:
        put_bytes(s3_server.client(), pool_image, original)

    for name in ("unlabeled.json", "manifest.json"):
        key = S3Uri.parse(published.uri).join(name)
        original = s3_server.client().get_object(Bucket=key.bucket, Key=key.key)["Body"].read()
        put_bytes(s3_server.client(), key, original + b" ")
        try:
            with pytest.raises(SplitIntegrityError, match=f"{name}: sha256 [0-9a-f]{{64}} but the pipeline recorded"):
                fetch_split(published, tmp_path / f"pod-{name}", s3_server.client())
        finally:
            put_bytes(s3_server.client(), key, original)


def test_distributed_nodes_all_receive_the_split(s3_server: Any) -> None:
    images = {"train_images": "s3://b/datasets/x", "val_images": "s3://b/datasets/y"}
    published = PublishedSplit("s3://b/splits/abc", {"labeled.json": "0" * 64}, images)
    for engine, render in (("trainjob", render_trainjob), ("pytorchjob", render_pytorchjob)):
        cfg = pod_cfg(s3_server, engine)
        manifest = render(cfg, plan_run(cfg, "r1", published))
        if engine == "trainjob":
            envs = [manifest["spec"]["trainer"]["env"]]
        else:
            replicas = manifest["spec"]["pytorchReplicaSpecs"].values()
            envs = [replica["template"]["spec"]["containers"][0]["env"] for replica in replicas]
        for env in envs:
            values = {item["name"]: item.get("value") for item in env}
            assert PublishedSplit.from_json(values[SPLIT_ENV]) == published, engine


def run_container_here(container: dict[str, Any], config_yaml: str, secrets: dict[str, str], work: Path) -> Any:
    """Play the kubelet: run the pod's command with its environment (Secret references resolved from
    `secrets`) and its config annotation as the mounted config file."""
    work.mkdir(parents=True, exist_ok=True)
    config_file = work / "config.yaml"
    config_file.write_text(config_yaml)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRS_POSE_", "MLFLOW_"))}
    for item in container["env"]:
        if "value" in item and item["name"] not in {"HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR"}:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}) and item["name"] in secrets:
            env[item["name"]] = secrets[item["name"]]
    env["PYTHONPATH"] = str(REPO_ROOT)
    command = list(container["command"])
    assert command[:2] == ["trs-pose", "train"]
    command = [sys.executable, "-m", "cli.main", *command[1:]]
    command[command.index("--config") + 1] = str(config_file)
    return subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, timeout=300)


def test_the_pod_receives_the_split_and_refuses_a_tampered_one_as_a_config_error(
    dataset: tuple[Path, SplitFiles], s3_server: Any, tmp_path: Path
) -> None:
    _, split = dataset
    cfg = pod_cfg(s3_server)
    published = publish_split(split, s3_server.client(), s3_server.bucket)
    labeled = S3Uri.parse(published.uri).join("labeled.json")
    secrets = {"AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key}
    secrets["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"
    standin = StandInApiServer().start()
    outcome: dict[str, Any] = {}

    def kubelet() -> None:
        try:
            job = standin.wait_for_job()
            name = job["metadata"]["name"]
            template = job["spec"]["template"]
            container = template["spec"]["containers"][0]
            outcome["split"] = {e["name"]: e.get("value") for e in container["env"]}.get(SPLIT_ENV)
            tampered = json.loads(split.labeled_ann.read_text())
            tampered["images"] = tampered["images"][:-1]  # one labeled image less than was validated
            put_bytes(s3_server.client(), labeled, json.dumps(tampered).encode())
            standin.add_pod(name, f"{name}-a")
            done = run_container_here(
                container, template["metadata"]["annotations"][CONFIG_ANNOTATION], secrets, tmp_path
            )
            outcome["pod"] = done
            state = {"terminated": {"exitCode": done.returncode, "reason": "Error"}}
            standin.set_pod(f"{name}-a", phase="Failed", container_state=state)
            standin.set_job_condition(
                name, "Failed", "PodFailurePolicy", f"Container trainer exited with code {done.returncode}"
            )
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=kubelet, daemon=True)
    thread.start()
    api = client.ApiClient(client.Configuration(host=standin.url))
    try:
        with pytest.raises(LaunchError) as error:
            KubernetesLauncher(cfg, api, log=lambda line: None, poll_seconds=1).launch(unique_name("tamper"), published)
    finally:
        thread.join(320)
        standin.stop()
    assert "error" not in outcome, outcome.get("error")
    assert PublishedSplit.from_json(outcome["split"]) == published
    pod = outcome["pod"]
    assert pod.returncode == 3, pod.stderr[-2000:]
    lines = [line for line in pod.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in pod.stderr, pod.stderr[-2000:]
    assert str(labeled) in lines[0] and published.sha256["labeled.json"] in lines[0]
    assert sha256_file(tmp_path / "runs" / "split" / "split" / "labeled.json") in lines[0]
    assert error.value.reason == "ConfigError"
    assert not (tmp_path / "runs" / "split" / "images").exists(), "nothing fetched after the failed check"
