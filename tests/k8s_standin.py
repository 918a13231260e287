"""A LOCAL STAND-IN for the few Kubernetes API endpoints the launcher calls. It is NOT Kubernetes.

No cluster can run on the development machines, so the launcher is tested against this small
`http.server` that speaks the same wire format for exactly these requests:

    POST   /apis/batch/v1/namespaces/{ns}/jobs                 create a Job
    GET    /apis/batch/v1/namespaces/{ns}/jobs/{name}          read a Job
    DELETE /apis/batch/v1/namespaces/{ns}/jobs/{name}          delete a Job (records propagationPolicy)
    the same three for trainer.kubeflow.org/v1alpha1 trainjobs and kubeflow.org/v1 pytorchjobs
    (custom objects: the CRDs are taken as installed)
    GET    /api/v1/namespaces/{ns}/pods?labelSelector=k=v      list pods, or watch them with watch=true
    GET    /api/v1/namespaces/{ns}/pods/{name}/log             a pod's log, streamed with follow=true

It runs nothing: no controller creates pods and no kubelet runs them. A test plays those parts by
scripting pod phases, container states, log lines and workload conditions through the methods below
(`add_pod` labels a pod as the Job, JobSet or Training Operator controller would),
which is how each failure mode (OOMKilled, ImagePullBackOff, a preempted pod, a deadline) is made
to happen on demand. Anything else gets 404, so a launcher that starts calling a new endpoint fails
its tests instead of passing against a fake that is too kind.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

WORKLOAD = re.compile(r"^/apis/([^/]+)/([^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?$")
WORKLOAD_KINDS = {  # (group, version, plural) -> kind; any other /apis path is a 404
    ("batch", "v1", "jobs"): "Job",
    ("trainer.kubeflow.org", "v1alpha1", "trainjobs"): "TrainJob",
    ("kubeflow.org", "v1", "pytorchjobs"): "PyTorchJob",
}
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
POD_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
FINISHED_PHASES = {"Succeeded", "Failed"}


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _pod_template(job: dict[str, Any], replica: str, index: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The pod template a controller stamps pods from, and the labels it adds of its own."""
    name = job["metadata"]["name"]
    if (
        job["kind"] == "TrainJob"
    ):  # TrainJob -> JobSet -> indexed Job "node"; the renderer's runtime patch is the template
        patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
        return patch["template"]["spec"]["template"], {
            "jobset.sigs.k8s.io/jobset-name": name,
            "jobset.sigs.k8s.io/replicatedjob-name": patch["name"],
            "jobset.sigs.k8s.io/job-index": "0",
            "batch.kubernetes.io/job-completion-index": str(index),
            "trainer.kubeflow.org/trainjob-name": name,
        }
    if job["kind"] == "PyTorchJob":
        return job["spec"]["pytorchReplicaSpecs"][replica]["template"], {
            "training.kubeflow.org/job-name": name,
            "training.kubeflow.org/replica-type": replica.lower(),
            "training.kubeflow.org/replica-index": str(index),
        }
    return job["spec"]["template"], {"batch.kubernetes.io/job-name": name}


class StandInApiServer:
    """Holds the objects and the event history; `url` is what a kubernetes Configuration points at."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}  # every workload kind, by (namespace, name)
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[str, list[str]] = {}
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (version, namespace, type, pod)
        self.deleted_jobs: list[tuple[str, str | None]] = []  # (name, propagationPolicy), any workload kind
        self.requests: list[tuple[str, str]] = []
        self.changed = threading.Condition()
        self.version = 0
        self.stopping = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandInApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.changed:
            self.stopping = True
            self.changed.notify_all()
        self._server.shutdown()
        self._server.server_close()

    # ---- the parts a controller and a kubelet would play, scripted by tests ----

    def wait_for_job(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not self.jobs:
                if not self.changed.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("no Job was created on the stand-in")
            return copy.deepcopy(next(iter(self.jobs.values())))

    def add_pod(
        self, job_name: str, pod_name: str, namespace: str | None = None, replica: str = "Master", index: int = 0
    ) -> None:
        """A pending pod of the workload, labelled from its template as its controller would.

        `index` is the node (TrainJob) or replica index (PyTorchJob, `replica` Master or Worker)."""
        with self.changed:
            job = next(j for (ns, n), j in self.jobs.items() if n == job_name and namespace in (None, ns))
            template, own_labels = _pod_template(job, replica, index)
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": job["metadata"]["namespace"],
                    "labels": dict(template["metadata"].get("labels", {}), **own_labels),
                    "uid": str(uuid.uuid4()),
                    "ownerReferences": [{"kind": job["kind"], "name": job_name, "uid": job["metadata"]["uid"]}],
                },
                "spec": copy.deepcopy(template["spec"]),
                "status": {"phase": "Pending", "conditions": [], "containerStatuses": []},
            }
            self.pods[(pod["metadata"]["namespace"], pod_name)] = pod
            self.logs.setdefault(pod_name, [])
            self._record("ADDED", pod)

    def set_pod(
        self,
        pod_name: str,
        phase: str | None = None,
        condition: dict[str, Any] | None = None,
        container_state: dict[str, Any] | None = None,
    ) -> None:
        """Change a pod's phase, add a condition, or set its container's state (waiting/running/terminated)."""
        with self.changed:
            pod = self._pod(pod_name)
            status = pod["status"]
            if phase:
                status["phase"] = phase
            if condition:
                status["conditions"] = [c for c in status["conditions"] if c["type"] != condition["type"]] + [condition]
            if container_state is not None:
                name = pod["spec"]["containers"][0]["name"]
                status["containerStatuses"] = [
                    {"name": name, "ready": "running" in container_state, "state": container_state}
                ]
            self._record("MODIFIED", pod)

    def write_log(self, pod_name: str, *lines: str) -> None:
        with self.changed:
            self.logs[pod_name].extend(lines)
            self.changed.notify_all()

    def delete_pod(self, pod_name: str, disruption: str | None = None) -> None:
        """Remove a pod; with `disruption` it first gets the DisruptionTarget condition, as on preemption."""
        if disruption:
            self.set_pod(
                pod_name,
                condition={"type": "DisruptionTarget", "status": "True", "reason": disruption, "message": "stand-in"},
            )
        with self.changed:
            pod = self.pods.pop((self._pod(pod_name)["metadata"]["namespace"], pod_name))
            self._record("DELETED", pod)

    def set_job_condition(self, job_name: str, kind: str, reason: str = "", message: str = "") -> None:
        with self.changed:
            job = next(j for (_, n), j in self.jobs.items() if n == job_name)
            job.setdefault("status", {}).setdefault("conditions", []).append(
                {"type": kind, "status": "True", "reason": reason, "message": message}
            )
            self.changed.notify_all()

    # ---- internals ----

    def _pod(self, pod_name: str) -> dict[str, Any]:
        return next(p for (_, n), p in self.pods.items() if n == pod_name)

    def _record(self, kind: str, pod: dict[str, Any]) -> None:
        self.version += 1
        pod["metadata"]["resourceVersion"] = str(self.version)
        self.events.append((self.version, pod["metadata"]["namespace"], kind, copy.deepcopy(pod)))
        self.changed.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked responses, so watch events and log lines arrive as written

            def log_message(self, format: str, *args: Any) -> None:
                return

            def handle(self) -> None:
                # the launcher may drop a watch or log stream at any time
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle()

            def _send_json(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _start_stream(self, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

            def _chunk(self, data: bytes) -> None:
                if data:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

            def _end_stream(self) -> None:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send_json(
                    code,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": reason,
                        "message": message,
                        "code": code,
                    },
                )

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                server.requests.append((method, self.path))
                try:
                    self._dispatch(method, url.path, query)
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: a closed watch
                    self.close_connection = True

            def _dispatch(self, method: str, path: str, query: dict[str, str]) -> None:
                url = urlparse(path)
                m = WORKLOAD.match(url.path)
                if m and (kind := WORKLOAD_KINDS.get((m.group(1), m.group(2), m.group(4)))):
                    return self._jobs(method, kind, f"{m.group(4)}.{m.group(1)}", m.group(3), m.group(5), query)
                if method == "GET" and (m := PODS.match(url.path)):
                    return self._pods(m.group(1), query)
                if method == "GET" and (m := POD_LOG.match(url.path)):
                    return self._log(m.group(2), query)
                self._status(404, "NotFound", f"the stand-in does not serve {method} {url.path}")

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_DELETE(self) -> None:
                self._route("DELETE")

            def _jobs(
                self, method: str, kind: str, resource: str, namespace: str, name: str | None, query: dict[str, str]
            ) -> None:
                if method == "POST" and name is None:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                    if body.get("kind") != kind:
                        return self._status(400, "BadRequest", f"a {body.get('kind')} posted to {resource}")
                    key = (namespace, body["metadata"]["name"])
                    with server.changed:
                        if key in server.jobs:
                            return self._status(409, "AlreadyExists", f'{resource} "{key[1]}" already exists')
                        body["metadata"].update(uid=str(uuid.uuid4()), namespace=namespace)
                        body["status"] = {}
                        server.jobs[key] = body
                        server.changed.notify_all()
                    return self._send_json(201, body)
                key = (namespace, name or "")
                with server.changed:
                    job = copy.deepcopy(server.jobs.get(key))
                if job is None or job["kind"] != kind:
                    return self._status(404, "NotFound", f'{resource} "{name}" not found')
                if method == "GET":
                    return self._send_json(200, job)
                if method == "DELETE":
                    length = int(self.headers.get("Content-Length", 0) or 0)
                    body = json.loads(self.rfile.read(length)) if length else {}
                    policy = query.get("propagationPolicy") or body.get("propagationPolicy")
                    with server.changed:
                        server.jobs.pop(key)
                        server.deleted_jobs.append((name or "", policy))
                        for pod_key, pod in list(server.pods.items()):
                            if any(o["name"] == name for o in pod["metadata"]["ownerReferences"]):
                                server.pods.pop(pod_key)
                                server._record("DELETED", pod)
                    return self._send_json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
                self._status(405, "MethodNotAllowed", method)

            def _pods(self, namespace: str, query: dict[str, str]) -> None:
                selector = query.get("labelSelector", "")
                if query.get("watch", "").lower() not in ("true", "1"):
                    with server.changed:
                        items = [
                            p
                            for (ns, _), p in server.pods.items()
                            if ns == namespace and _matches(p["metadata"]["labels"], selector)
                        ]
                        return self._send_json(
                            200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
                        )
                deadline = time.monotonic() + float(query.get("timeoutSeconds", 30))
                self._start_stream("application/json")
                with server.changed:
                    since = int(query.get("resourceVersion") or 0)
                    if not since:  # a fresh watch starts with the current pods, as the API server's does
                        pending = [("ADDED", p) for (ns, _), p in server.pods.items() if ns == namespace]
                        since = server.version
                    else:
                        pending = []
                while True:
                    self._chunk(
                        b"".join(
                            (json.dumps({"type": kind, "object": pod}) + "\n").encode()
                            for kind, pod in pending
                            if _matches(pod["metadata"]["labels"], selector)
                        )
                    )
                    with server.changed:
                        fresh = [e for e in server.events if e[0] > since and e[1] == namespace]
                        while not fresh and not server.stopping and time.monotonic() < deadline:
                            server.changed.wait(max(0.0, deadline - time.monotonic()))
                            fresh = [e for e in server.events if e[0] > since and e[1] == namespace]
                        if not fresh:
                            return self._end_stream()
                        since = fresh[-1][0]
                        pending = [(kind, pod) for _, _, kind, pod in fresh]

            def _log(self, pod_name: str, query: dict[str, str]) -> None:
                with server.changed:
                    known = pod_name in server.logs
                if not known:
                    return self._status(404, "NotFound", f'pods "{pod_name}" not found')
                follow = query.get("follow", "").lower() in ("true", "1")
                self._start_stream("text/plain")
                sent = 0
                while True:
                    with server.changed:
                        lines = server.logs[pod_name][sent:]
                        sent += len(lines)
                        pod = next((p for (_, n), p in server.pods.items() if n == pod_name), None)
                        ended = pod is None or pod["status"]["phase"] in FINISHED_PHASES or server.stopping
                        if not lines and not ended and follow:
                            server.changed.wait(1.0)
                    self._chunk("".join(line + "\n" for line in lines).encode())
                    if not follow or (ended and not lines):
                        return self._end_stream()

        return Handler
