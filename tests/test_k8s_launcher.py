"""The pod backend's launcher against the local stand-in API server (tests/k8s_standin.py).

Each test scripts what a Job controller and a kubelet would do (pods, their states, log lines, the
Job's final condition) in a thread, while the launcher watches from the test's thread, exactly as
it would watch a real cluster.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from components.config import ExperimentConfig, load_config
from components.kubernetes.launcher import KubernetesLauncher, LaunchError
from components.kubernetes.manifests import RUN_URI_ENV, plan_run
from components.kubernetes.run_result import RunResult, publish_if_in_pod, read_run_result, write_run_result
from tests.k8s_standin import StandInApiServer
from tests.service_fixtures import unique_name

RUNNING = {"running": {"startedAt": "2026-11-25T00:00:00Z"}}


def terminated(code: int, reason: str) -> dict[str, dict[str, object]]:
    return {"terminated": {"exitCode": code, "reason": reason}}


@pytest.fixture
def standin() -> Iterator[StandInApiServer]:
    server = StandInApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def cfg() -> ExperimentConfig:
    return load_config(
        None, ["backend.kind=kubernetes", "backend.kubernetes.namespace=ml", "storage.bucket=runs-bucket"]
    )


class Harness:
    """Runs a launcher against the stand-in while `script` plays the cluster in a thread."""

    def __init__(self, standin: StandInApiServer, cfg: ExperimentConfig) -> None:
        self.standin = standin
        self.cfg = cfg
        self.lines: list[str] = []
        self.read_from: list[str] = []
        self.script_errors: list[BaseException] = []

    def reader(self, run_uri: str) -> RunResult:
        self.read_from.append(run_uri)
        return RunResult(f"{run_uri}/checkpoints/step-000040.pt", 40, {"AP": 0.42})

    def wait_for_line(self, text: str, timeout: float = 10.0) -> None:
        """Block the script until the launcher has logged `text`, i.e. has seen that state."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the launcher never logged {text!r}")
            time.sleep(0.02)

    def launch(self, script: Callable[[StandInApiServer, str], None], log: Callable[[str], None] | None = None):
        def play() -> None:
            try:
                job = self.standin.wait_for_job()
                script(self.standin, job["metadata"]["name"])
            except BaseException as exc:
                self.script_errors.append(exc)

        thread = threading.Thread(target=play, daemon=True)
        thread.start()
        api = client.ApiClient(client.Configuration(host=self.standin.url))
        launcher = KubernetesLauncher(
            self.cfg, api, log=log or self.lines.append, result_reader=self.reader, poll_seconds=1
        )
        try:
            return launcher.launch(run_id="test-run")
        finally:
            thread.join(10)
            assert not self.script_errors, self.script_errors


def run_pod(standin: StandInApiServer, job: str, pod: str, *lines: str) -> None:
    standin.add_pod(job, pod)
    standin.set_pod(pod, phase="Running", container_state=RUNNING)
    standin.write_log(pod, *lines)


def succeed(standin: StandInApiServer, job: str, pod: str) -> None:
    standin.set_pod(pod, phase="Succeeded", container_state=terminated(0, "Completed"))
    standin.set_job_condition(job, "Complete")


def test_success_streams_logs_and_reads_the_result(standin: StandInApiServer, cfg: ExperimentConfig) -> None:
    harness = Harness(standin, cfg)

    def script(s: StandInApiServer, job: str) -> None:
        run_pod(s, job, "test-run-a", "step 20 loss 0.5", "step 40 loss 0.3")
        succeed(s, job, "test-run-a")

    result = harness.launch(script)
    assert result.step == 40 and result.metrics == {"AP": 0.42}
    assert result.run_uri == "s3://runs-bucket/runs/test-run"
    assert result.checkpoint_uri.startswith(result.run_uri)
    assert harness.read_from == [result.run_uri]
    assert result.pods == ("test-run-a",)
    assert "[test-run-a] step 40 loss 0.3" in harness.lines
    assert standin.deleted_jobs == []  # kept for its TTL so its logs stay readable
    submitted = standin.jobs[("ml", "test-run")]
    annotation = submitted["spec"]["template"]["metadata"]["annotations"]["trs-pose.io/config"]
    assert "s3://runs-bucket/runs/test-run/checkpoints" in annotation


def test_oom_killed_pod_fails_with_reason_and_deletes_the_job(standin: StandInApiServer, cfg: ExperimentConfig) -> None:
    def script(s: StandInApiServer, job: str) -> None:
        run_pod(s, job, "test-run-a", "step 1")
        s.set_pod("test-run-a", phase="Failed", container_state=terminated(137, "OOMKilled"))

    with pytest.raises(LaunchError) as error:
        Harness(standin, cfg).launch(script)
    assert error.value.reason == "OOMKilled"
    assert "memory_limit" in str(error.value)
    assert standin.deleted_jobs == [("test-run", "Background")]


def test_image_pull_backoff_fails_fast(standin: StandInApiServer, cfg: ExperimentConfig) -> None:
    def script(s: StandInApiServer, job: str) -> None:
        s.add_pod(job, "test-run-a")
        s.set_pod("test-run-a", container_state={"waiting": {"reason": "ErrImagePull", "message": "not found"}})
        s.set_pod(
            "test-run-a", container_state={"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling"}}
        )

    harness = Harness(standin, cfg)
    with pytest.raises(LaunchError) as error:
        harness.launch(script)
    assert error.value.reason == "ImagePullBackOff"
    assert "backend.kubernetes.image" in str(error.value)
    assert standin.deleted_jobs == [("test-run", "Background")]


def test_preempted_pod_is_replaced_and_the_launcher_keeps_watching(
    standin: StandInApiServer, cfg: ExperimentConfig
) -> None:
    def script(s: StandInApiServer, job: str) -> None:
        run_pod(s, job, "test-run-a", "step 20 checkpoint saved")
        harness.wait_for_line("[test-run-a] step 20")
        s.delete_pod("test-run-a", disruption="PreemptionByScheduler")
        run_pod(s, job, "test-run-b", "resumed from step 20", "step 40 checkpoint saved")
        succeed(s, job, "test-run-b")

    harness = Harness(standin, cfg)
    result = harness.launch(script)
    assert result.pods == ("test-run-a", "test-run-b")
    assert result.step == 40
    assert any("test-run-a disrupted (PreemptionByScheduler" in line for line in harness.lines)
    assert "[test-run-b] resumed from step 20" in harness.lines
    assert standin.deleted_jobs == []


def test_deadline_exceeded(standin: StandInApiServer, cfg: ExperimentConfig) -> None:
    def script(s: StandInApiServer, job: str) -> None:
        run_pod(s, job, "test-run-a", "step 1")
        s.set_job_condition(job, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        s.set_pod("test-run-a", phase="Failed", container_state=terminated(143, "Error"))  # the controller kills it

    with pytest.raises(LaunchError) as error:
        Harness(standin, cfg).launch(script)
    assert error.value.reason == "DeadlineExceeded"
    assert "active_deadline_seconds" in str(error.value)
    assert standin.deleted_jobs == [("test-run", "Background")]


def test_config_error_exit_code_is_reported_as_config_error(standin: StandInApiServer, cfg: ExperimentConfig) -> None:
    def script(s: StandInApiServer, job: str) -> None:
        run_pod(s, job, "test-run-a", "Error: train.iterations: must be >= 1")
        s.set_pod("test-run-a", phase="Failed", container_state=terminated(2, "Error"))
        s.set_job_condition(job, "Failed", "PodFailurePolicy", "Container trainer exited with code 2")

    with pytest.raises(LaunchError) as error:
        Harness(standin, cfg).launch(script)
    assert error.value.reason == "ConfigError"
    assert "exited 2" in error.value.detail


def test_unschedulable_pod_gives_up_after_the_timeout(standin: StandInApiServer) -> None:
    cfg = load_config(None, ["backend.kubernetes.namespace=ml", "backend.kubernetes.unschedulable_timeout_seconds=1"])

    def script(s: StandInApiServer, job: str) -> None:
        s.add_pod(job, "test-run-a")
        s.set_pod(
            "test-run-a",
            condition={
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes: Insufficient nvidia.com/gpu",
            },
        )

    with pytest.raises(LaunchError) as error:
        Harness(standin, cfg).launch(script)
    assert error.value.reason == "Unschedulable"
    assert standin.deleted_jobs == [("test-run", "Background")]


def test_interrupt_deletes_the_job(standin: StandInApiServer, cfg: ExperimentConfig) -> None:
    def script(s: StandInApiServer, job: str) -> None:
        s.add_pod(job, "test-run-a")
        s.set_pod("test-run-a", container_state={"waiting": {"reason": "ErrImagePull", "message": "slow registry"}})

    def interrupting_log(line: str) -> None:
        if "image pull failed" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Harness(standin, cfg).launch(script, log=interrupting_log)
    assert standin.deleted_jobs == [("test-run", "Background")]
    assert ("ml", "test-run") not in standin.jobs


def test_a_second_submission_of_the_same_run_is_refused_clearly(
    standin: StandInApiServer, cfg: ExperimentConfig
) -> None:
    api = client.ApiClient(client.Configuration(host=standin.url))
    launcher = KubernetesLauncher(cfg, api, log=lambda line: None, poll_seconds=1)
    plan = plan_run(cfg, "test-run")
    launcher.submit(plan)
    with pytest.raises(LaunchError) as error:
        launcher.submit(plan)
    assert error.value.reason == "AlreadyExists" and "HTTP 409" in error.value.detail
    assert "choose another run id" in str(error.value)
    launcher.cleanup(plan.job_name)
    launcher.cleanup(plan.job_name)  # already gone: not an error
    assert standin.deleted_jobs == [("test-run", "Background")]


class FakeS3:
    """Just the two calls run_result makes; the real store is exercised by the services tests."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.objects[(Bucket, Key)] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, io.BytesIO]:
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}


def test_run_result_round_trip_through_the_run_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeS3()
    monkeypatch.delenv(RUN_URI_ENV, raising=False)
    assert publish_if_in_pod("s3://b/ck.pt", 10, {"AP": 0.5}) is None  # outside a pod: nothing written
    where = write_run_result(
        "s3://b/runs/r1", RunResult("s3://b/runs/r1/checkpoints/step-10.pt", 10, {"AP": 0.5}), store
    )
    assert where == "s3://b/runs/r1/result.json" and ("b", "runs/r1/result.json") in store.objects
    assert read_run_result("s3://b/runs/r1", store) == RunResult(
        "s3://b/runs/r1/checkpoints/step-10.pt", 10, {"AP": 0.5}
    )
    store.objects[("b", "runs/r1/result.json")] = b'{"step": 3}'
    with pytest.raises(ValueError, match="s3://b/runs/r1/result.json"):
        read_run_result("s3://b/runs/r1", store)


def test_the_pods_result_write_outlasts_a_store_that_blinks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last write of a training pod is retried like its checkpoints: a refused connection then success."""
    from botocore.exceptions import EndpointConnectionError

    from components.storage.retry import Patient
    from components.storage.s3 import _describe_call, is_transient_s3_error

    class Blinking(FakeS3):
        refusals = 2

        def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
            if self.refusals:
                self.refusals -= 1
                raise EndpointConnectionError(endpoint_url="http://s3.example")
            super().put_object(Bucket=Bucket, Key=Key, Body=Body)

    monkeypatch.setattr("components.storage.retry.time.sleep", lambda seconds: None)
    monkeypatch.setenv(RUN_URI_ENV, "s3://b/runs/r2")
    store = Blinking()
    patient = Patient(store, transient=is_transient_s3_error, deadline_s=60, endpoint="e", describe=_describe_call)
    assert publish_if_in_pod("s3://b/ck.pt", 10, {"AP": 0.5}, patient) == "s3://b/runs/r2/result.json"
    assert store.refusals == 0 and read_run_result("s3://b/runs/r2", store) == RunResult(
        "s3://b/ck.pt", 10, {"AP": 0.5}
    )


@pytest.mark.slow
def test_success_reads_what_the_pod_wrote_to_real_s3(standin: StandInApiServer, s3_server: Any) -> None:
    """The pod's side (write_run_result) and the launcher's default reader meet on a real S3 store."""
    cfg = load_config(
        None,
        [
            "backend.kubernetes.namespace=ml",
            f"storage.bucket={s3_server.bucket}",
            f"storage.endpoint_url={s3_server.endpoint_url}",
        ],
    )
    run_id = unique_name("k8s-run")
    run_uri = plan_run(cfg, run_id).run_uri

    def script(s: StandInApiServer, job: str) -> None:
        run_pod(s, job, f"{job}-a", "training")
        write_run_result(
            run_uri, RunResult(f"{run_uri}/checkpoints/step-000007.pt", 7, {"AP": 0.25}), s3_server.client()
        )
        succeed(s, job, f"{job}-a")

    thread = threading.Thread(target=lambda: script(standin, standin.wait_for_job()["metadata"]["name"]), daemon=True)
    thread.start()
    api = client.ApiClient(client.Configuration(host=standin.url))
    with s3_server.aws_env():
        result = KubernetesLauncher(cfg, api, log=lambda line: None, poll_seconds=1).launch(run_id=run_id)
    thread.join(10)
    assert (result.step, result.metrics) == (7, {"AP": 0.25})
    assert result.checkpoint_uri == f"s3://{s3_server.bucket}/runs/{run_id}/checkpoints/step-000007.pt"


# ---- the distributed engines: a Kubeflow Trainer v2 TrainJob and a Training Operator PyTorchJob ----


def engine_cfg(engine: str, nodes: int = 2) -> ExperimentConfig:
    return load_config(
        None,
        [
            "backend.kind=kubernetes",
            "backend.kubernetes.namespace=ml",
            "storage.bucket=runs-bucket",
            f"backend.kubernetes.engine={engine}",
            f"backend.kubernetes.nodes={nodes}",
        ],
    )


def run_node(standin: StandInApiServer, job: str, pod: str, *lines: str, **where: Any) -> None:
    standin.add_pod(job, pod, **where)
    standin.set_pod(pod, phase="Running", container_state=RUNNING)
    standin.write_log(pod, *lines)


def test_trainjob_success_streams_node_0_and_reads_the_result(standin: StandInApiServer) -> None:
    harness = Harness(standin, engine_cfg("trainjob"))

    def script(s: StandInApiServer, job: str) -> None:
        run_node(s, job, "test-run-node-0-0-a", "rank 0: step 40 AP 0.42", index=0)
        run_node(s, job, "test-run-node-0-1-b", "rank 1: step 40", index=1)
        for pod in ("test-run-node-0-0-a", "test-run-node-0-1-b"):
            s.set_pod(pod, phase="Succeeded", container_state=terminated(0, "Completed"))
        s.set_job_condition(job, "Complete", "JobSetCompleted", "jobset completed")

    result = harness.launch(script)
    assert (result.step, result.metrics, result.pods) == (
        40,
        {"AP": 0.42},
        ("test-run-node-0-0-a", "test-run-node-0-1-b"),
    )
    assert harness.read_from == ["s3://runs-bucket/runs/test-run"]
    assert "[test-run-node-0-0-a] rank 0: step 40 AP 0.42" in harness.lines
    assert not any("rank 1" in line for line in harness.lines)  # only rank 0 is streamed
    assert standin.jobs[("ml", "test-run")]["kind"] == "TrainJob"
    assert ("POST", "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs") in standin.requests
    assert any("jobset.sigs.k8s.io%2Fjobset-name%3Dtest-run" in path for _, path in standin.requests)
    assert standin.deleted_jobs == []


def test_pytorchjob_success_survives_a_restart_and_streams_the_master(standin: StandInApiServer) -> None:
    harness = Harness(standin, engine_cfg("pytorchjob"))

    def script(s: StandInApiServer, job: str) -> None:
        run_node(s, job, "test-run-master-0", "master: step 20", replica="Master")
        run_node(s, job, "test-run-worker-0", "worker: step 20", replica="Worker")
        harness.wait_for_line("[test-run-master-0] master: step 20")
        s.set_job_condition(job, "Restarting", "PyTorchJobRestarting", "worker 0 exited with code 137")
        harness.wait_for_line("PyTorchJob test-run restarting")
        s.write_log("test-run-master-0", "master: resumed, step 40")
        for pod in ("test-run-master-0", "test-run-worker-0"):
            s.set_pod(pod, phase="Succeeded", container_state=terminated(0, "Completed"))
        s.set_job_condition(job, "Succeeded", "PyTorchJobSucceeded", "PyTorchJob test-run is successfully completed.")

    result = harness.launch(script)
    assert result.step == 40 and result.pods == ("test-run-master-0", "test-run-worker-0")
    assert "[test-run-master-0] master: resumed, step 40" in harness.lines
    assert not any("worker: step" in line for line in harness.lines)
    assert standin.jobs[("ml", "test-run")]["kind"] == "PyTorchJob"
    assert ("POST", "/apis/kubeflow.org/v1/namespaces/ml/pytorchjobs") in standin.requests
    assert standin.deleted_jobs == []


def test_pytorchjob_failed_condition_gives_its_reason_and_deletes_it(standin: StandInApiServer) -> None:
    def script(s: StandInApiServer, job: str) -> None:
        run_node(s, job, "test-run-master-0", "step 1", replica="Master")
        s.set_job_condition(
            job,
            "Failed",
            "PyTorchJobFailed",
            "PyTorchJob test-run has failed because it was active longer than specified deadline",
        )

    with pytest.raises(LaunchError) as error:
        Harness(standin, engine_cfg("pytorchjob")).launch(script)
    assert (error.value.reason, error.value.kind) == ("DeadlineExceeded", "PyTorchJob")
    assert "training PyTorchJob test-run failed" in str(error.value) and "active_deadline_seconds" in str(error.value)
    assert standin.deleted_jobs == [("test-run", "Background")]
    assert ("ml", "test-run") not in standin.jobs and not standin.pods  # its pods went with it
    assert any(
        m == "DELETE" and path.startswith("/apis/kubeflow.org/v1/namespaces/ml/pytorchjobs/test-run")
        for m, path in standin.requests
    )


def test_trainjob_worker_oom_and_failed_condition_delete_the_trainjob(standin: StandInApiServer) -> None:
    def oom(s: StandInApiServer, job: str) -> None:
        run_node(s, job, "test-run-node-0-0-a", "step 1", index=0)
        run_node(s, job, "test-run-node-0-1-b", "step 1", index=1)
        s.set_pod("test-run-node-0-1-b", phase="Failed", container_state=terminated(137, "OOMKilled"))

    with pytest.raises(LaunchError) as error:
        Harness(standin, engine_cfg("trainjob")).launch(oom)
    assert error.value.reason == "OOMKilled" and "test-run-node-0-1-b" in error.value.detail
    assert standin.deleted_jobs == [("test-run", "Background")]

    def failed(s: StandInApiServer, job: str) -> None:
        run_node(s, job, "test-run-node-0-0-a", "step 1", index=0)
        s.set_job_condition(job, "Failed", "FailedJobs", "jobset failed due to one or more job failures")

    with pytest.raises(LaunchError) as error:
        Harness(standin, engine_cfg("trainjob")).launch(failed)
    assert error.value.reason == "FailedJobs" and "one or more job failures" in error.value.detail
    assert standin.deleted_jobs == [("test-run", "Background")] * 2
    assert any(
        m == "DELETE" and path.startswith("/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs/test-run")
        for m, path in standin.requests
    )


def test_a_multi_node_config_on_the_job_engine_is_refused_before_submitting(standin: StandInApiServer) -> None:
    api = client.ApiClient(client.Configuration(host=standin.url))
    with pytest.raises(LaunchError) as error:
        KubernetesLauncher(engine_cfg("job"), api, log=lambda line: None).launch(run_id="test-run")
    assert error.value.reason == "EngineMismatch" and "engine to trainjob or pytorchjob" in str(error.value)
    assert standin.requests == []
