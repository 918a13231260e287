"""Faults against real servers that the tests stop and restart on the same ports: S3 (SeaweedFS) out
for a while or for good, MLflow down at registration, the pipeline process SIGKILLed. Each test
checks that nothing already stored is lost and that `--resume` (or patience) finishes the run.

The servers here are this module's own (not the session's), since these tests take them down.
Recovery times are printed (run with -s to see them; docs/operations.md quotes them).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from components.config import load_config
from components.services.mlflow_server import MLflowServer
from components.services.seaweedfs import S3Credentials, S3Endpoint, SeaweedFSServer
from components.storage.s3 import S3Uri, iter_objects
from tests.service_fixtures import TEST_ACCESS_KEY, TEST_BUCKET, TEST_SECRET_KEY, MLflowService, unique_name

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Services:
    """SeaweedFS and MLflow that a test may stop and start again on the same ports and state."""

    s3_server: SeaweedFSServer
    mlflow_server: MLflowServer
    endpoint: S3Endpoint
    service: MLflowService

    def stop_s3(self) -> None:
        self.s3_server.stop()

    def start_s3(self, tie_to_parent: bool = True) -> float:
        """Same ports and data. From a short-lived thread pass tie_to_parent=False: Linux signals the
        child when the thread that started it ends; the fixture stops it either way."""
        started = time.monotonic()
        self.s3_server = SeaweedFSServer(
            self.s3_server.state_dir, self.s3_server.credentials, TEST_BUCKET, ports=self.s3_server.ports
        )
        self.s3_server.start(timeout=90.0, tie_to_parent=tie_to_parent)
        return time.monotonic() - started

    def stop_mlflow(self) -> None:
        self.mlflow_server.stop()

    def start_mlflow(self) -> float:
        started = time.monotonic()
        port = self.mlflow_server.port
        self.mlflow_server = MLflowServer(self.mlflow_server.state_dir, self.endpoint, port=port)
        self.mlflow_server.start(timeout=120.0, tie_to_parent=True)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    state = tmp_path_factory.mktemp("fault-services")
    s3 = SeaweedFSServer(state / "s3", S3Credentials(TEST_ACCESS_KEY, TEST_SECRET_KEY), bucket=TEST_BUCKET)
    endpoint = s3.start(timeout=90.0, tie_to_parent=True)
    mlflow = MLflowServer(state / "mlflow", endpoint)
    try:
        tracking_uri = mlflow.start(timeout=120.0, tie_to_parent=True)
        running = Services(s3, mlflow, endpoint, MLflowService(tracking_uri, endpoint, mlflow.artifacts_destination))
        yield running
    finally:
        mlflow.stop()
        s3.stop()
    running.mlflow_server.stop()
    running.s3_server.stop()


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from components.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, 24, 8, seed=5, image_size=(128, 160))
    return root


def overrides(root: Path, work: Path, services: Services, model: str, extra: list[str]) -> list[str]:
    return [
        f"name={model}",
        f"data.root={root}",
        "data.synthetic=null",
        f"data.cache_dir={work / 'cache'}",
        "data.labeled_fraction=0.5",
        "data.holdout_labeled=2",
        "input.image_size=[64, 48]",
        "model.deconv_layers=3",
        "model.deconv_channels=16",
        "train.method=trs",
        "train.batch_size=4",
        "train.unlabeled_batch_size=4",
        "train.num_workers=0",
        "train.warmup_iters=2",
        "train.log_every=2",
        "train.reviewer.check_every=4",
        "train.iterations=12",
        "train.checkpoint.every=4",
        "train.checkpoint.keep_last=10",
        f"train.checkpoint.dir=s3://{TEST_BUCKET}/{model}/checkpoints",
        "eval.batch_size=8",
        "eval.num_workers=0",
        f"registry.tracking_uri={services.service.tracking_uri}",
        f"registry.experiment={model}",
        f"registry.model_name={model}",
        "registry.retry_deadline_s=8",
        "registry.onnx=false",  # the export is not what these tests are about, and costs seconds a registration
        f"storage.endpoint_url={services.endpoint.endpoint_url}",
        f"storage.bucket={TEST_BUCKET}",
        "storage.retry_deadline_s=8",
        "storage.run_lease_ttl_s=3",
        *extra,
    ]


def stored_objects(services: Services, prefix: str = "") -> dict[str, str]:
    """Key -> ETag of everything in the bucket under `prefix`."""
    client = services.endpoint.client()
    return {obj["Key"]: obj["ETag"] for obj in iter_objects(client, S3Uri(TEST_BUCKET, prefix))}


def assert_kept(before: dict[str, str], after: dict[str, str]) -> None:
    """Every object stored before the fault is still there, unchanged (leases may come and go)."""
    moving = ("locks/", "/latest")  # leases come and go; `latest` moves on as training goes on
    lost = {key for key in before if not any(m in key for m in moving) and after.get(key) != before[key]}
    assert not lost, f"objects lost or changed: {sorted(lost)[:5]}"


def test_mlflow_down_at_registration_fails_cleanly_and_resume_registers(
    services: Services, synthetic_root: Path, zenml_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow stops right after the version is created (before its alias): the registration is
    retried to its deadline and the run fails; the half-made version is pending, unaliased, never
    promotable. `--resume` (after a restart) reuses train and evaluate, removes it, registers once."""
    from mlflow.tracking import MlflowClient

    from components.registry.lifecycle import CHALLENGER, CHAMPION, TAG_REGISTRATION
    from pipelines.runner import resume_training_pipeline, run_training_pipeline

    monkeypatch.chdir(tmp_path)
    model = unique_name("mlflow-down")
    cfg = load_config(None, overrides(synthetic_root, tmp_path, services, model, []))
    original = MlflowClient.create_model_version
    stopped_at: list[float] = []

    def create_then_lose_the_server(self: Any, *args: Any, **kwargs: Any) -> Any:
        created = original(self, *args, **kwargs)
        if not stopped_at:
            services.stop_mlflow()
            stopped_at.append(time.monotonic())
        return created

    monkeypatch.setattr(MlflowClient, "create_model_version", create_then_lose_the_server)
    with services.endpoint.aws_env():
        with pytest.raises(RuntimeError) as failure:
            run_training_pipeline(cfg, run_name=model)
        failed_after = time.monotonic() - stopped_at[0]
        monkeypatch.setattr(MlflowClient, "create_model_version", original)
        message = str(failure.value)
        assert message.startswith("step register_model failed: StoreUnavailable: MLflow server"), message
        assert services.service.tracking_uri in message and "unreachable while writing a version" in message
        assert failed_after < 8 + 90, f"gave up {failed_after:.0f} s after the outage began (deadline 8 s)"
        stored = stored_objects(services)

        restart_s = services.start_mlflow()
        client = services.service.client()
        versions = client.search_model_versions(f"name = '{model}'")
        assert [v.tags.get(TAG_REGISTRATION) for v in versions] == ["pending"]
        assert client.get_registered_model(model).aliases == {}, "a half-made version got an alias"

        started = time.monotonic()
        reports: list[Any] = []
        summary = resume_training_pipeline(model, on_step=reports.append)
        resume_s = time.monotonic() - started
        assert summary.status == "completed"
        done = [(report.step, report.reused) for report in reports]  # what `trs-pose run` prints a line each of
        reused = {
            *("ingest_data", "validate_data", "find_subject_boxes", "split_data"),
            *("check_inputs", "train_model", "evaluate_student"),
        }
        fresh = [("register_model", False), ("promote_model", False), ("suggest_next_labels", False)]
        assert {step for step, was_reused in done[: len(reused)] if was_reused} == reused, done
        assert done[len(reused) :] == fresh, done
        promote_report = next(report for report in reports if report.step == "promote_model")
        assert promote_report.outputs["promotion"].promoted
        assert summary.outputs["promotion"].promoted
        versions = client.search_model_versions(f"name = '{model}'")
        assert [v.tags.get(TAG_REGISTRATION) for v in versions] == ["complete"], "the pending version stays"
        aliases = client.get_registered_model(model).aliases
        assert aliases[CHALLENGER] == aliases[CHAMPION] == str(versions[0].version)
        assert client.get_run(versions[0].run_id).info.status == "FINISHED"
        assert_kept(stored, stored_objects(services))
    print(
        f"\n[recovery] MLflow down at registration: failed {failed_after:.1f} s after the outage "
        f"(deadline 8 s); restart {restart_s:.1f} s; --resume to a registered champion {resume_s:.1f} s"
    )


def _students_equal(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> bool:
    return set(left) == set(right) and all(torch.equal(left[key], right[key]) for key in left)


def test_s3_outage_across_a_checkpoint_upload_is_waited_out(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS stops after step 3 and comes back ~30 s later: the step-4 upload waits (the training
    state stays in memory), the run completes with an undisturbed run's weights, and the step-2
    checkpoint written before the outage is still there."""
    from components.engine.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
    from components.engine.trainer import train
    from tests.tiny_coco import make_tiny_split, tiny_config

    split = make_tiny_split(tmp_path / "data")
    undisturbed = train(tiny_config(tmp_path / "local", "trs"), split, progress=False)
    expected = load_checkpoint(undisturbed.checkpoint_uri)["student"]

    prefix = f"s3://{TEST_BUCKET}/{unique_name('outage')}"
    extra = [f"storage.endpoint_url={services.endpoint.endpoint_url}", "storage.retry_deadline_s=120"]
    cfg = tiny_config(prefix, "trs", extra)
    outage_s = 30.0
    events: dict[str, float] = {}

    def back_later() -> None:
        time.sleep(outage_s)
        events["restart_s"] = services.start_s3(tie_to_parent=False)
        events["back"] = time.monotonic()

    def stop_after_step_3(step: int) -> None:
        if step == 3:
            services.stop_s3()
            events["down"] = time.monotonic()
            threading.Thread(target=back_later, daemon=True).start()
        if step == 4:
            events["saved"] = time.monotonic()

    with services.endpoint.aws_env():
        result = train(cfg, split, on_step=stop_after_step_3, progress=False)
        client = services.endpoint.client()
        assert [step for step, _ in list_checkpoints(prefix, client)] == [2, 4, 6]
        assert latest_checkpoint(prefix, client) == f"{prefix}/ckpt-00000006.pt"
        assert load_checkpoint(f"{prefix}/ckpt-00000002.pt", client)["step"] == 2
        final = load_checkpoint(result.checkpoint_uri, client)
    assert _students_equal(final["student"], expected), "the weights differ from an undisturbed run's"
    waited = events["saved"] - events["down"]
    assert waited >= outage_s
    print(
        f"\n[recovery] S3 down {events['back'] - events['down']:.1f} s across a checkpoint upload: upload done "
        f"{events['saved'] - events['back']:.1f} s after SeaweedFS was back (its restart took "
        f"{events['restart_s']:.1f} s); no step lost"
    )


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for_object(services: Services, key: str, process: subprocess.Popen[str], timeout: float = 600) -> None:
    client, deadline = services.endpoint.client(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {key} was written:\n{process.communicate()[0][-3000:]}")
        if any(True for _ in iter_objects(client, S3Uri(TEST_BUCKET, key))):
            return
        time.sleep(0.2)
    raise AssertionError(f"{key} never appeared")


def _run_until_first_checkpoint(
    model: str, services: Services, root: Path, zenml_home: Path, work: Path
) -> tuple[list[str], list[str], dict[str, str], subprocess.Popen[str]]:
    """`trs-pose run` of the tiny config in a child process, returned once its step-4 checkpoint is stored."""
    settings = overrides(root, work, services, model, [])
    args = [arg for setting in settings for arg in ("--set", setting)]
    env = {**services.endpoint.environment(), "ZENML_CONFIG_PATH": str(zenml_home)}
    process = _cli(["run", "--no-local-services", "--run-name", model, *args], env, work)
    _wait_for_object(services, f"{model}/checkpoints/{model}/ckpt-00000004.pt", process)
    return settings, args, env, process


def _reference_student(run_name: str, cfg_overrides: list[str], work: Path) -> dict[str, torch.Tensor]:
    """The same config trained without interruption by the engine alone, on the run's own split."""
    from zenml.client import Client

    from components.engine.checkpoint import load_checkpoint
    from components.engine.trainer import train

    split = Client().get_pipeline_run(run_name).steps["split_data"].outputs["split"][0].load()
    files = split.files()
    cfg = load_config(None, [*cfg_overrides, f"train.checkpoint.dir={work / 'reference'}"])
    return load_checkpoint(train(cfg, files, progress=False).checkpoint_uri)["student"]


def test_sigkill_during_training_then_resume_ends_with_uninterrupted_weights(
    services: Services, synthetic_root: Path, zenml_home: Path, tmp_path: Path
) -> None:
    """The pipeline process is SIGKILLed at a random moment after the first checkpoint. Its run is
    then shown failed by `runs list`, a plain re-run of the name is refused with one line, and
    `run --resume` completes it with the student an uninterrupted run ends with (bitwise, CPU)."""
    from components.engine.checkpoint import load_checkpoint

    model = unique_name("killed")
    settings, args, env, process = _run_until_first_checkpoint(model, services, synthetic_root, zenml_home, tmp_path)
    time.sleep(random.uniform(0.0, 1.5))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = time.monotonic()
    stored = stored_objects(services, f"{model}/")

    again = _cli(["run", "--no-local-services", "--run-name", model, *args], env, tmp_path)
    refused = again.communicate(timeout=300)[0]
    assert again.returncode != 0 and "already exists" in refused and "Traceback" not in refused, refused

    time.sleep(3.5)  # storage.run_lease_ttl_s: the dead process's lease expires
    listing = _cli(["runs", "list", "--no-local-services"], env, tmp_path)
    listed = listing.communicate(timeout=300)[0]
    line = next(line for line in listed.splitlines() if line.startswith(f"│ {model} "))
    assert "failed" in line and "died" in line, listed

    resume_started = time.monotonic()
    resumed = _cli(["run", "--no-local-services", "--resume", model, *args], env, tmp_path)
    output = resumed.communicate(timeout=600)[0]
    recovered_s, resume_s = time.monotonic() - killed_at, time.monotonic() - resume_started
    assert resumed.returncode == 0, output[-3000:]
    assert f"{model}-resume-1: completed" in output

    from zenml.client import Client

    training = Client().get_pipeline_run(f"{model}-resume-1").steps["train_model"].outputs["training"][0].load()
    with services.endpoint.aws_env():
        final = load_checkpoint(training.checkpoint_uri, services.endpoint.client())
    assert final["step"] == 12
    assert_kept(stored, stored_objects(services, f"{model}/"))
    assert _students_equal(final["student"], _reference_student(model, settings, tmp_path))
    runs = services.service.client().search_runs(
        [services.service.client().get_experiment_by_name(model).experiment_id]
    )
    assert [run.info.status for run in runs] == ["FINISHED"], "the killed MLflow run was not continued"
    print(
        f"\n[recovery] SIGKILL during training: `run --resume` to a registered model {resume_s:.1f} s "
        f"(kill -> registered {recovered_s:.1f} s, with a refused re-run and `runs list` in between)"
    )


def test_s3_down_for_good_fails_within_the_deadline_and_resume_completes(
    services: Services, synthetic_root: Path, zenml_home: Path, tmp_path: Path
) -> None:
    """SeaweedFS stops after the first checkpoint and stays down: the next upload is retried for
    storage.retry_deadline_s, then the run fails with one line naming the endpoint and the object, and
    no traceback on the console; nothing is registered. `runs show` prints the step's traceback while
    S3 is still down. After a restart `--resume` completes and registers the run."""
    model = unique_name("s3-gone")
    _, _, env, process = _run_until_first_checkpoint(model, services, synthetic_root, zenml_home, tmp_path)
    stored = stored_objects(services, f"{model}/")
    services.stop_s3()
    down_at = time.monotonic()
    try:
        output = process.communicate(timeout=600)[0]
        failed_after = time.monotonic() - down_at
        shown = _cli(["runs", "show", model, "--no-local-services"], env, tmp_path)  # S3 still down
        details = shown.communicate(timeout=300)[0]
    finally:
        if services.s3_server.process is None:
            restart_s = services.start_s3()
    assert process.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[output.index("Traceback") - 500 :][:3000]
    last = output.strip().splitlines()[-1]
    # the call that meets the outage is the next checkpoint upload, its `latest` pointer, or the listing that prunes
    checkpoints = f"s3://{TEST_BUCKET}/{model}/checkpoints/{model}/"
    assert services.endpoint.endpoint_url in last and checkpoints in last and "Nothing was registered" in last, last
    assert f"trs-pose runs show {model}" in last, last
    client = services.service.client()
    assert client.search_registered_models(f"name = '{model}'") == []
    assert shown.returncode == 0, details[-3000:]
    assert "traceback of step train_model:" in details and "StoreUnavailable: S3 endpoint" in details, details[-3000:]

    started = time.monotonic()
    resumed = _cli(["run", "--no-local-services", "--resume", model], env, tmp_path)
    output = resumed.communicate(timeout=600)[0]
    resume_s = time.monotonic() - started
    assert resumed.returncode == 0, output[-3000:]
    assert [v.version for v in client.search_model_versions(f"name = '{model}'")] == ["1"]
    assert_kept(stored, stored_objects(services, f"{model}/"))
    print(
        f"\n[recovery] S3 down for good (deadline 8 s): run failed {failed_after:.1f} s after the outage; "
        f"SeaweedFS restart {restart_s:.1f} s; --resume to a registered model {resume_s:.1f} s"
    )


class Killed(BaseException):
    """Stands for the process dying mid-write (BaseException: no handler of ours catches it)."""


def test_checkpoint_write_interrupted_midway_keeps_the_previous_one(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local disk: the process dies after writing the bytes of step 4 but before the rename. S3: it
    dies after the first part of a multipart upload. Either way `latest` names step 2, which loads."""
    import components.atomic_files as atomic_files
    from components.engine.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint

    state = {"step": 2, "student": {"w": torch.randn(1_600_000)}}  # 6.4 MB: a multipart upload at 5 MB parts
    local = tmp_path / "ckpt"
    save_checkpoint(state, local, 2)

    def die(descriptor: int) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(atomic_files.os, "fsync", die)
        with pytest.raises(Killed):
            save_checkpoint({**state, "step": 4}, local, 4)
    assert latest_checkpoint(local) == str(local / "ckpt-00000002.pt")
    assert [step for step, _ in list_checkpoints(local)] == [2]
    assert load_checkpoint(latest_checkpoint(local))["step"] == 2

    client = services.endpoint.client()
    prefix = f"s3://{TEST_BUCKET}/{unique_name('torn')}"
    save_checkpoint(state, prefix, 2, client)

    class DiesMidUpload:
        """The real client, except that upload_fileobj sends one part of five and then dies."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def upload_fileobj(self, body: Any, bucket: str, key: str) -> None:
            upload = self.inner.create_multipart_upload(Bucket=bucket, Key=key)
            part = body.read(5 * 1024 * 1024)
            self.inner.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=part)
            raise Killed

    with pytest.raises(Killed):
        save_checkpoint({**state, "step": 4}, prefix, 4, DiesMidUpload(client))
    assert latest_checkpoint(prefix, client) == f"{prefix}/ckpt-00000002.pt"
    assert [step for step, _ in list_checkpoints(prefix, client)] == [2]
    assert torch.equal(
        load_checkpoint(latest_checkpoint(prefix, client), client)["student"]["w"], state["student"]["w"]
    )
