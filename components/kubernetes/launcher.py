"""Run one training on Kubernetes (a Job, a TrainJob or a PyTorchJob) and bring back what it wrote.

The launcher submits the rendered workload (`backend.kubernetes.engine`) with the official
`kubernetes` client: a batch/v1 Job through BatchV1Api, a Kubeflow Trainer v2 TrainJob or a
Training Operator PyTorchJob through CustomObjectsApi. It watches the workload's pods (by the labels
its controller puts on them), streams rank 0's log into the caller's log, and turns the ways a GPU pod dies into errors that
say why and what to change: an image that cannot be pulled, a container killed for memory, a pod no
node can take, a deadline, a config the training rejected. A pod removed by a disruption
(preemption, node drain) is not an error: the Job's podFailurePolicy ignores it, a replacement pod
resumes from the last checkpoint on S3, and the launcher keeps watching and streams the new pod.

On failure or interrupt the workload is deleted (its pods with it); on success it is left for its
ttlSecondsAfterFinished so its logs stay inspectable. Objects are read as plain JSON dicts so the
launcher depends only on the API's wire format. The three engines share one code path; what differs
(API group, success condition, pod labels, which pod is rank 0, container name) is an `Engine`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from components.config import ExperimentConfig
from components.data.published_split import PublishedSplit
from components.errors import TrsPoseError
from components.kubernetes.manifests import (
    CONTAINER_NAME,
    PYTORCHJOB_CONTAINER,
    RUN_LABEL,
    TRAINJOB_CONTAINER,
    Manifest,
    RunPlan,
    plan_run,
    render_job,
    render_pytorchjob,
    render_trainjob,
)
from components.kubernetes.run_result import ResultReader, RunResult, read_run_result
from components.services.reachability import CONNECT_TIMEOUT_S

LogSink = Callable[[str], None]

# Reasons the launcher gives up on at once, with what the user should do about each.
HINTS: dict[str, str] = {
    "ImagePullBackOff": "check backend.kubernetes.image (tag or digest) and the registry's pull secret",
    "ErrImagePull": "check backend.kubernetes.image (tag or digest) and the registry's pull secret",
    "InvalidImageName": "backend.kubernetes.image is not a valid image reference",
    "CreateContainerConfigError": "a referenced Secret or key is missing (backend.kubernetes.s3_secret / mlflow_secret / zenml_secret)",
    "OOMKilled": "raise backend.kubernetes.memory_limit or lower train.batch_size / train.num_workers",
    "Unschedulable": "no node fits: check the GPU node pool, backend.kubernetes.node_selector, tolerations and requests",
    "DeadlineExceeded": "raise backend.kubernetes.active_deadline_seconds or lower train.iterations",
    "BackoffLimitExceeded": "every retry failed; read the pod logs above",
    "ConfigError": "the training rejected its config; fix it and resubmit (config errors are never retried)",
    "AlreadyExists": "a workload with this run id exists; choose another run id or delete it",
    "Forbidden": "the caller lacks RBAC for this workload: apply k8s/base (Role trs-pose-launcher) or check the namespace",
    "NotFound": "check backend.kubernetes.namespace; for engine trainjob / pytorchjob the cluster needs "
    "Kubeflow Trainer v2 / the Training Operator (their CRDs)",
    "EngineMismatch": "a Job runs one process on one node: set backend.kubernetes.engine to trainjob or pytorchjob",
    "Invalid": "the API server rejected the manifest; inspect it with `trs-pose k8s render --kind <engine>`",
    "ResultMissing": "the pod finished without writing result.json under its run prefix",
}
FATAL_WAITING_REASONS = {"ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}


class LaunchError(TrsPoseError, RuntimeError):
    """A pod-backend run that failed; `reason` is the Kubernetes (or our) reason, e.g. OOMKilled."""

    def __init__(self, job_name: str, reason: str, detail: str, kind: str = "Job") -> None:
        hint = HINTS.get(reason)
        super().__init__(f"training {kind} {job_name} failed: {reason}: {detail}" + (f" ({hint})" if hint else ""))
        self.job_name = job_name
        self.kind = kind
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class LaunchResult:
    job_name: str
    run_uri: str
    checkpoint_uri: str
    step: int
    metrics: dict[str, float]
    pods: tuple[str, ...]  # every pod that ran, in order; more than one means a disruption was survived


@dataclass
class _PodTracker:
    """What the launcher has already seen of each pod, so each event is reported once."""

    started_logs: dict[str, threading.Thread] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    unschedulable_since: dict[str, float] = field(default_factory=dict)
    reported: set[tuple[str, str]] = field(default_factory=set)
    last_termination: tuple[str, str, int] | None = None  # (pod, reason, exit code)


@dataclass(frozen=True)
class Engine:
    """What differs between the workload kinds; submitting, watching and diagnosing are shared."""

    kind: str
    render: Callable[[ExperimentConfig, RunPlan], Manifest]
    group: str
    version: str
    plural: str
    container: str  # the training container, whose log is streamed
    pod_selector: Callable[[RunPlan], str]  # the labels the workload's controller puts on its pods
    is_rank0: Callable[[dict[str, str]], bool]  # pod labels -> is this the pod whose log is streamed
    complete: str = "Complete"  # the status condition that means success; "Failed" means failure for all three
    restarting: str | None = None  # a condition that is logged, not fatal (the operator restarts the pods)


ENGINES: dict[str, Engine] = {
    "job": Engine(
        "Job",
        render_job,
        "batch",
        "v1",
        "jobs",
        CONTAINER_NAME,
        pod_selector=lambda plan: f"{RUN_LABEL}={plan.run_id}",
        is_rank0=lambda labels: True,  # one pod at a time, each a replacement of the last
    ),
    "trainjob": Engine(  # TrainJob -> JobSet -> an indexed Job per replicated job; node 0 is rank 0
        "TrainJob",
        render_trainjob,
        "trainer.kubeflow.org",
        "v1alpha1",
        "trainjobs",
        TRAINJOB_CONTAINER,
        pod_selector=lambda plan: f"jobset.sigs.k8s.io/jobset-name={plan.job_name}",
        is_rank0=lambda labels: (
            labels.get("jobset.sigs.k8s.io/replicatedjob-name") == TRAINJOB_CONTAINER
            and labels.get("jobset.sigs.k8s.io/job-index", "0") == "0"
            and labels.get("batch.kubernetes.io/job-completion-index") == "0"
        ),
    ),
    "pytorchjob": Engine(
        "PyTorchJob",
        render_pytorchjob,
        "kubeflow.org",
        "v1",
        "pytorchjobs",
        PYTORCHJOB_CONTAINER,
        pod_selector=lambda plan: f"training.kubeflow.org/job-name={plan.job_name}",
        is_rank0=lambda labels: labels.get("training.kubeflow.org/replica-type") == "master",
        complete="Succeeded",
        restarting="Restarting",
    ),
}


API_TIMEOUT = (CONNECT_TIMEOUT_S, 60.0)  # (connect, read) seconds of each API call: a dead API server fails fast


class _Workloads:
    """Create, read and delete one engine's objects: BatchV1Api for Jobs, CustomObjectsApi for the CRDs."""

    def __init__(self, api_client: client.ApiClient, engine: Engine, namespace: str) -> None:
        self.engine = engine
        self.namespace = namespace
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    @property
    def _custom_args(self) -> tuple[str, str, str]:
        return self.engine.group, self.engine.version, self.namespace

    def create(self, manifest: Manifest) -> None:
        if self.engine.plural == "jobs":
            self.batch.create_namespaced_job(
                self.namespace, manifest, _preload_content=False, _request_timeout=API_TIMEOUT
            )
        else:
            self.custom.create_namespaced_custom_object(
                *self._custom_args, self.engine.plural, manifest, _preload_content=False, _request_timeout=API_TIMEOUT
            )

    def read(self, name: str) -> dict[str, Any]:
        if self.engine.plural == "jobs":
            return _json(
                self.batch.read_namespaced_job(
                    name, self.namespace, _preload_content=False, _request_timeout=API_TIMEOUT
                )
            )
        return _json(
            self.custom.get_namespaced_custom_object(
                *self._custom_args, self.engine.plural, name, _preload_content=False, _request_timeout=API_TIMEOUT
            )
        )

    def delete(self, name: str) -> None:
        if self.engine.plural == "jobs":
            self.batch.delete_namespaced_job(
                name,
                self.namespace,
                propagation_policy="Background",
                _preload_content=False,
                _request_timeout=API_TIMEOUT,
            )
        else:
            self.custom.delete_namespaced_custom_object(
                *self._custom_args,
                self.engine.plural,
                name,
                propagation_policy="Background",
                _preload_content=False,
                _request_timeout=API_TIMEOUT,
            )


def _failure_reason(condition: dict[str, Any]) -> str:
    """The Failed condition's reason, or the one its message names: the operators say `<Kind>Failed`
    and put "active longer than specified deadline" / "backoff limit" in the message."""
    reason = condition.get("reason") or "Failed"
    message = (condition.get("message") or "").lower()
    if reason not in HINTS and "deadline" in message:
        return "DeadlineExceeded"
    if reason not in HINTS and "backoff limit" in message:
        return "BackoffLimitExceeded"
    return reason


def default_api_client() -> client.ApiClient:
    """In-cluster credentials inside a pod (the CronJob), the user's kubeconfig elsewhere."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def _json(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


class KubernetesLauncher:
    """Submit, watch, stream, diagnose, clean up: the train step's `kubernetes` backend."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        api_client: client.ApiClient | None = None,
        log: LogSink = print,
        result_reader: ResultReader | None = None,
        poll_seconds: float = 5.0,
    ) -> None:
        self.cfg = cfg
        self.namespace = cfg.backend.kubernetes.namespace
        self.api_client = api_client or default_api_client()
        self.engine = ENGINES[cfg.backend.kubernetes.engine]
        self.workloads = _Workloads(self.api_client, self.engine, self.namespace)
        self.core = client.CoreV1Api(self.api_client)
        self.log = log
        self.read_result = result_reader or read_run_result
        self.poll_seconds = poll_seconds
        self._log_lock = threading.Lock()

    def launch(self, run_id: str | None = None, split: PublishedSplit | None = None) -> LaunchResult:
        """Submit the workload for this config (training on `split` when given) and block until it
        completes; delete it if anything fails."""
        plan = plan_run(self.cfg, run_id, split)
        k8s = self.cfg.backend.kubernetes
        if self.engine.kind == "Job" and (k8s.nodes > 1 or k8s.processes_per_node > 1):
            raise self._error(
                plan.job_name, "EngineMismatch", f"nodes={k8s.nodes}, processes_per_node={k8s.processes_per_node}"
            )
        self.submit(plan)
        try:
            return self.wait(plan)
        except BaseException:
            self.cleanup(plan.job_name)
            raise

    def submit(self, plan: RunPlan) -> None:
        manifest = self.engine.render(self.cfg, plan)
        try:
            self.workloads.create(manifest)
        except ApiException as exc:
            try:
                status = json.loads(exc.body or "{}")
            except ValueError:
                status = {}
            reason = status.get("reason") or exc.reason or "SubmitFailed"
            detail = f"HTTP {exc.status}: {status.get('message') or (exc.body or '').strip()[:500]}"
            raise self._error(plan.job_name, reason, detail) from exc
        self._emit(
            f"submitted {self.engine.kind} {self.namespace}/{plan.job_name}; checkpoints and result under {plan.run_uri}"
        )

    def cleanup(self, job_name: str) -> None:
        """Delete the workload and, in the background, its pods; one already gone is fine."""
        try:
            self.workloads.delete(job_name)
            self._emit(f"deleted {self.engine.kind} {self.namespace}/{job_name}")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def wait(self, plan: RunPlan) -> LaunchResult:
        tracker = _PodTracker()
        selector = self.engine.pod_selector(plan)
        resource_version: str | None = None  # carried across reconnects so no pod event is missed
        while True:
            stream = watch.Watch()
            options: dict[str, Any] = {"resource_version": resource_version} if resource_version else {}
            try:
                for event in stream.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=selector,
                    timeout_seconds=max(1, int(self.poll_seconds)),
                    deserialize=False,
                    **options,
                ):
                    resource_version = event["object"]["metadata"].get("resourceVersion", resource_version)
                    self._on_pod_event(plan.job_name, event["type"], event["object"], tracker)
                    if self._finished(self._read(plan.job_name, tracker)):
                        stream.stop()
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: our version expired; start again from the current state
                    raise
                resource_version = None
            workload = self._read(plan.job_name, tracker)
            if _condition(workload, self.engine.complete):
                return self._finish(plan, tracker)
            failed = _condition(workload, "Failed")
            if failed:
                self._catch_up(plan, tracker)
                self._join_logs(tracker, timeout=3.0)  # the last lines of a failing pod, without hanging on it
                raise self._job_failure(plan.job_name, failed, tracker)
            self._check_unschedulable(plan.job_name, tracker)

    def _read(self, job_name: str, tracker: _PodTracker) -> dict[str, Any]:
        """The workload as it is now; an operator's restart of all its pods is logged once per restart."""
        workload = self.workloads.read(job_name)
        restarting = _condition(workload, self.engine.restarting) if self.engine.restarting else None
        if restarting and self._once(tracker, job_name, f"restarting {restarting.get('lastTransitionTime')}"):
            self._emit(
                f"{self.engine.kind} {job_name} restarting ({restarting.get('reason', '')}: "
                f"{restarting.get('message', '')}); training resumes from the last checkpoint"
            )
        return workload

    def _finished(self, workload: dict[str, Any]) -> bool:
        return bool(_condition(workload, self.engine.complete) or _condition(workload, "Failed"))

    def _catch_up(self, plan: RunPlan, tracker: _PodTracker) -> None:
        """Pods the watch had not reported when the Job finished still get their logs streamed."""
        pods = _json(
            self.core.list_namespaced_pod(
                self.namespace, label_selector=self.engine.pod_selector(plan), _preload_content=False
            )
        )
        for pod in pods.get("items", []):
            self._on_pod_event(plan.job_name, "MODIFIED", pod, tracker)

    def _finish(self, plan: RunPlan, tracker: _PodTracker) -> LaunchResult:
        self._catch_up(plan, tracker)
        self._join_logs(tracker)
        try:
            result: RunResult = self.read_result(plan.run_uri)
        except Exception as exc:
            raise self._error(plan.job_name, "ResultMissing", f"{plan.run_uri}: {exc}") from exc
        self._emit(f"{self.engine.kind} {plan.job_name} complete at step {result.step}: {result.checkpoint_uri}")
        return LaunchResult(
            plan.job_name, plan.run_uri, result.checkpoint_uri, result.step, dict(result.metrics), tuple(tracker.order)
        )

    def _on_pod_event(self, job_name: str, kind: str, pod: dict[str, Any], tracker: _PodTracker) -> None:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        phase = status.get("phase", "Pending")
        if name not in tracker.order:
            tracker.order.append(name)
        disruption = _condition(pod, "DisruptionTarget")
        if disruption and self._once(tracker, name, "disrupted"):
            self._emit(
                f"pod {name} disrupted ({disruption.get('reason', 'unknown')}: {disruption.get('message', '')}); "
                "the Job replaces it and training resumes from the last checkpoint"
            )
        if kind == "DELETED":
            if phase != "Succeeded" and not disruption and self._once(tracker, name, "deleted"):
                self._emit(f"pod {name} was deleted; the Job replaces it and training resumes from the last checkpoint")
            return
        scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
        if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            tracker.unschedulable_since.setdefault(name, time.monotonic())
            if self._once(tracker, name, "unschedulable"):
                self._emit(f"pod {name} is unschedulable: {scheduled.get('message', '')}")
        else:
            tracker.unschedulable_since.pop(name, None)
        for container in status.get("containerStatuses") or []:
            self._on_container(job_name, name, container, tracker)
        rank0 = self.engine.is_rank0(pod["metadata"].get("labels") or {})
        if rank0 and phase in {"Running", "Succeeded", "Failed"} and name not in tracker.started_logs:
            tracker.started_logs[name] = self._stream_logs(name)

    def _on_container(self, job_name: str, pod: str, container: dict[str, Any], tracker: _PodTracker) -> None:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in FATAL_WAITING_REASONS:
            raise self._error(job_name, reason, f"pod {pod}: {waiting.get('message', '')}".strip())
        if reason == "ErrImagePull" and self._once(tracker, pod, reason):
            self._emit(f"pod {pod}: image pull failed, the kubelet retries: {waiting.get('message', '')}")
        terminated = state.get("terminated")
        if not terminated or not self._once(tracker, pod, "terminated"):
            return
        code = int(terminated.get("exitCode", 0))
        why = terminated.get("reason", "")
        tracker.last_termination = (pod, why, code)
        self._emit(f"pod {pod} container exited with code {code} ({why})")
        if why == "OOMKilled":  # deterministic for a given config: retrying only burns GPU hours
            raise self._error(job_name, "OOMKilled", f"pod {pod} exceeded {self.cfg.backend.kubernetes.memory_limit}")

    def _check_unschedulable(self, job_name: str, tracker: _PodTracker) -> None:
        limit = self.cfg.backend.kubernetes.unschedulable_timeout_seconds
        for pod, since in tracker.unschedulable_since.items():
            if time.monotonic() - since >= limit:
                raise self._error(job_name, "Unschedulable", f"pod {pod} found no node for {limit} s")

    def _job_failure(self, job_name: str, failed: dict[str, Any], tracker: _PodTracker) -> LaunchError:
        reason = _failure_reason(failed)
        detail = failed.get("message") or ""
        if tracker.last_termination:
            pod, why, code = tracker.last_termination
            detail = f"{detail}; last pod {pod} exited {code} ({why})".lstrip("; ")
            if code == self.cfg.backend.kubernetes.config_error_exit_code:
                return self._error(job_name, "ConfigError", detail)
            if why == "OOMKilled":
                return self._error(job_name, "OOMKilled", detail)
        return self._error(job_name, reason, detail)

    def _stream_logs(self, pod: str) -> threading.Thread:
        """Follow the pod's log in a thread; it ends when the container does."""

        def follow() -> None:
            try:
                for line in watch.Watch().stream(
                    self.core.read_namespaced_pod_log, pod, self.namespace, container=self.engine.container, follow=True
                ):
                    self._emit(f"[{pod}] {line}")
            except ApiException as exc:
                self._emit(f"[{pod}] log stream ended: {exc.status} {exc.reason}")
            except Exception as exc:  # a dropped connection must not kill the launcher
                self._emit(f"[{pod}] log stream ended: {exc}")

        thread = threading.Thread(target=follow, name=f"logs-{pod}", daemon=True)
        thread.start()
        return thread

    def _join_logs(self, tracker: _PodTracker, timeout: float = 10.0) -> None:
        for thread in tracker.started_logs.values():
            thread.join(timeout)

    @staticmethod
    def _once(tracker: _PodTracker, pod: str, what: str) -> bool:
        key = (pod, what)
        if key in tracker.reported:
            return False
        tracker.reported.add(key)
        return True

    def _error(self, job_name: str, reason: str, detail: str) -> LaunchError:
        return LaunchError(job_name, reason, detail, kind=self.engine.kind)

    def _emit(self, line: str) -> None:
        with self._log_lock:
            self.log(line)


def launch_training(
    cfg: ExperimentConfig, log: LogSink = print, run_id: str | None = None, split: PublishedSplit | None = None
) -> LaunchResult:
    """The train step's entry point for `backend.kind: kubernetes`."""
    return KubernetesLauncher(cfg, log=log).launch(run_id, split)
