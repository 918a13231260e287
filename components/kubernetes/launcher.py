"""Run one training as a Kubernetes Job and bring back what the pod wrote.

The launcher submits the rendered Job with the official `kubernetes` client, watches the Job's
pods, streams their logs into the caller's log, and turns the ways a GPU pod dies into errors that
say why and what to change: an image that cannot be pulled, a container killed for memory, a pod no
node can take, a deadline, a config the training rejected. A pod removed by a disruption
(preemption, node drain) is not an error: the Job's podFailurePolicy ignores it, a replacement pod
resumes from the last checkpoint on S3, and the launcher keeps watching and streams the new pod.

On failure or interrupt the Job is deleted (its pods with it); on success it is left for its
ttlSecondsAfterFinished so its logs stay inspectable. Objects are read as plain JSON dicts so the
launcher depends only on the API's wire format.
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
from components.kubernetes.manifests import CONTAINER_NAME, RUN_LABEL, RunPlan, plan_run, render_job
from components.kubernetes.run_result import ResultReader, RunResult, read_run_result

LogSink = Callable[[str], None]

# Reasons the launcher gives up on at once, with what the user should do about each.
HINTS: dict[str, str] = {
    "ImagePullBackOff": "check backend.kubernetes.image (tag or digest) and the registry's pull secret",
    "ErrImagePull": "check backend.kubernetes.image (tag or digest) and the registry's pull secret",
    "InvalidImageName": "backend.kubernetes.image is not a valid image reference",
    "CreateContainerConfigError": "a referenced Secret or key is missing (backend.kubernetes.s3_secret / mlflow_secret)",
    "OOMKilled": "raise backend.kubernetes.memory_limit or lower train.batch_size / train.num_workers",
    "Unschedulable": "no node fits: check the GPU node pool, backend.kubernetes.node_selector, tolerations and requests",
    "DeadlineExceeded": "raise backend.kubernetes.active_deadline_seconds or lower train.iterations",
    "BackoffLimitExceeded": "every retry failed; read the pod logs above",
    "ConfigError": "the training rejected its config; fix it and resubmit (config errors are never retried)",
    "AlreadyExists": "a Job with this run id exists; choose another run id or delete that Job",
    "Forbidden": "the caller lacks RBAC to create Jobs: apply k8s/base (Role trs-pose-launcher) or check the namespace",
    "Invalid": "the API server rejected the manifest; inspect it with `trs-pose k8s render --kind job`",
    "ResultMissing": "the pod finished without writing result.json under its run prefix",
}
FATAL_WAITING_REASONS = {"ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}


class LaunchError(RuntimeError):
    """A pod-backend run that failed; `reason` is the Kubernetes (or our) reason, e.g. OOMKilled."""

    def __init__(self, job_name: str, reason: str, detail: str) -> None:
        hint = HINTS.get(reason)
        super().__init__(f"training Job {job_name} failed: {reason}: {detail}" + (f" ({hint})" if hint else ""))
        self.job_name = job_name
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
        self.batch = client.BatchV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.log = log
        self.read_result = result_reader or read_run_result
        self.poll_seconds = poll_seconds
        self._log_lock = threading.Lock()

    def launch(self, run_id: str | None = None) -> LaunchResult:
        """Submit a Job for this config and block until it completes; delete it if anything fails."""
        plan = plan_run(self.cfg, run_id)
        self.submit(plan)
        try:
            return self.wait(plan)
        except BaseException:
            self.cleanup(plan.job_name)
            raise

    def submit(self, plan: RunPlan) -> None:
        manifest = render_job(self.cfg, plan)
        try:
            self.batch.create_namespaced_job(self.namespace, manifest, _preload_content=False)
        except ApiException as exc:
            try:
                status = json.loads(exc.body or "{}")
            except ValueError:
                status = {}
            reason = status.get("reason") or exc.reason or "SubmitFailed"
            detail = f"HTTP {exc.status}: {status.get('message') or (exc.body or '').strip()[:500]}"
            raise LaunchError(plan.job_name, reason, detail) from exc
        self._emit(f"submitted Job {self.namespace}/{plan.job_name}; checkpoints and result under {plan.run_uri}")

    def cleanup(self, job_name: str) -> None:
        """Delete the Job and, in the background, its pods; a Job already gone is fine."""
        try:
            self.batch.delete_namespaced_job(
                job_name, self.namespace, propagation_policy="Background", _preload_content=False
            )
            self._emit(f"deleted Job {self.namespace}/{job_name}")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def wait(self, plan: RunPlan) -> LaunchResult:
        tracker = _PodTracker()
        selector = f"{RUN_LABEL}={plan.run_id}"
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
                    if self._job_finished(plan.job_name):
                        stream.stop()
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: our version expired; start again from the current state
                    raise
                resource_version = None
            job = _json(self.batch.read_namespaced_job(plan.job_name, self.namespace, _preload_content=False))
            if _condition(job, "Complete"):
                return self._finish(plan, tracker)
            failed = _condition(job, "Failed")
            if failed:
                self._catch_up(plan, tracker)
                self._join_logs(tracker, timeout=3.0)  # the last lines of a failing pod, without hanging on it
                raise self._job_failure(plan.job_name, failed, tracker)
            self._check_unschedulable(plan.job_name, tracker)

    def _job_finished(self, job_name: str) -> bool:
        job = _json(self.batch.read_namespaced_job(job_name, self.namespace, _preload_content=False))
        return bool(_condition(job, "Complete") or _condition(job, "Failed"))

    def _catch_up(self, plan: RunPlan, tracker: _PodTracker) -> None:
        """Pods the watch had not reported when the Job finished still get their logs streamed."""
        pods = _json(
            self.core.list_namespaced_pod(
                self.namespace, label_selector=f"{RUN_LABEL}={plan.run_id}", _preload_content=False
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
            raise LaunchError(plan.job_name, "ResultMissing", f"{plan.run_uri}: {exc}") from exc
        self._emit(f"Job {plan.job_name} complete at step {result.step}: {result.checkpoint_uri}")
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
        scheduled = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None
        )
        if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            tracker.unschedulable_since.setdefault(name, time.monotonic())
            if self._once(tracker, name, "unschedulable"):
                self._emit(f"pod {name} is unschedulable: {scheduled.get('message', '')}")
        else:
            tracker.unschedulable_since.pop(name, None)
        for container in status.get("containerStatuses") or []:
            self._on_container(job_name, name, container, tracker)
        if phase in {"Running", "Succeeded", "Failed"} and name not in tracker.started_logs:
            tracker.started_logs[name] = self._stream_logs(name)

    def _on_container(self, job_name: str, pod: str, container: dict[str, Any], tracker: _PodTracker) -> None:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in FATAL_WAITING_REASONS:
            raise LaunchError(job_name, reason, f"pod {pod}: {waiting.get('message', '')}".strip())
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
            raise LaunchError(job_name, "OOMKilled", f"pod {pod} exceeded {self.cfg.backend.kubernetes.memory_limit}")

    def _check_unschedulable(self, job_name: str, tracker: _PodTracker) -> None:
        limit = self.cfg.backend.kubernetes.unschedulable_timeout_seconds
        for pod, since in tracker.unschedulable_since.items():
            if time.monotonic() - since >= limit:
                raise LaunchError(job_name, "Unschedulable", f"pod {pod} found no node for {limit} s")

    def _job_failure(self, job_name: str, failed: dict[str, Any], tracker: _PodTracker) -> LaunchError:
        reason = failed.get("reason") or "Failed"
        detail = failed.get("message") or ""
        if tracker.last_termination:
            pod, why, code = tracker.last_termination
            detail = f"{detail}; last pod {pod} exited {code} ({why})".lstrip("; ")
            if code == self.cfg.backend.kubernetes.config_error_exit_code:
                return LaunchError(job_name, "ConfigError", detail)
            if why == "OOMKilled":
                return LaunchError(job_name, "OOMKilled", detail)
        return LaunchError(job_name, reason, detail)

    def _stream_logs(self, pod: str) -> threading.Thread:
        """Follow the pod's log in a thread; it ends when the container does."""

        def follow() -> None:
            try:
                for line in watch.Watch().stream(
                    self.core.read_namespaced_pod_log, pod, self.namespace, container=CONTAINER_NAME, follow=True
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

    def _emit(self, line: str) -> None:
        with self._log_lock:
            self.log(line)


def launch_training(cfg: ExperimentConfig, log: LogSink = print, run_id: str | None = None) -> LaunchResult:
    """The train step's entry point for `backend.kind: kubernetes`."""
    return KubernetesLauncher(cfg, log=log).launch(run_id)
