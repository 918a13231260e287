"""Render the training workloads (Job, TrainJob, PyTorchJob, CronJob) from an ExperimentConfig.

Every manifest is a plain dict, so it can be validated offline, printed as YAML, or handed to the
official `kubernetes` client. The resolved config travels inside the workload itself: it is a pod
annotation that a downwardAPI volume mounts as `/etc/trs-pose/config.yaml`. That keeps a run one
self-contained object (nothing to create first, nothing to garbage-collect, no ConfigMap RBAC) and
`kubectl describe` shows exactly what the pod trained with.

The renderer also rewrites the config for the pod: the checkpoint directory moves onto S3 under
the run's prefix with `resume: true`, so a pod restarted after a disruption continues from its last
checkpoint, and the backend becomes `local`, because inside the pod the training is in-process.
A run planned with the pipeline's published split gives every training container (every node of a
TrainJob or PyTorchJob too) that split's S3 URI and recorded hashes in TRS_POSE_SPLIT.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import yaml

from components.config import ConfigError, ExperimentConfig, KubernetesConfig
from components.data.published_split import SPLIT_ENV, PublishedSplit

Manifest = dict[str, Any]
WorkloadKind = Literal["job", "trainjob", "pytorchjob", "cronjob"]
WORKLOAD_KINDS: tuple[WorkloadKind, ...] = ("job", "trainjob", "pytorchjob", "cronjob")

APP_LABEL = "app.kubernetes.io/name"
APP_NAME = "trs-pose"
RUN_LABEL = "trs-pose.io/run-id"
CONFIG_ANNOTATION = "trs-pose.io/config"
CONFIG_DIR = "/etc/trs-pose"
CONFIG_PATH = f"{CONFIG_DIR}/config.yaml"
RUN_URI_ENV = "TRS_POSE_RUN_URI"
HOME_DIR = "/home/trs"
WORK_DIR = "/workspace"
CONTAINER_NAME = "trainer"
TRAINJOB_CONTAINER = "node"  # the container (and replicated job) of the stock torch-distributed runtime
PYTORCHJOB_CONTAINER = "pytorch"  # the container name the Training Operator requires
RUN_AS_ID = 10001
MAX_NAME_LENGTH = 52  # Jobs add a 5-character pod suffix and label values stop at 63
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
MLFLOW_SECRET_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
ZENML_SECRET_KEYS = ("ZENML_STORE_URL", "ZENML_STORE_API_KEY")
GPU_RESOURCE = "nvidia.com/gpu"


CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# (field, lowest, highest, names counted from `lowest`) of the five fields the API server accepts
CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
CRON_ITEM = re.compile(r"^(?P<range>\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/(?P<step>[0-9]+))?$")


def _cron_value(text: str, lowest: int, highest: int, names: tuple[str, ...]) -> int | None:
    if text.upper() in names:
        return lowest + names.index(text.upper())
    return int(text) if text.isdigit() and lowest <= int(text) <= highest else None


def check_cron(expression: str) -> str:
    """The schedule, stripped, if the API server would accept it; else ConfigError naming the field and its range.

    Five fields `minute hour day-of-month month day-of-week`, each a comma list of `*`, `N`, `N-M`,
    with an optional `/step` (month and weekday also by name), or one of CRON_MACROS.
    """
    text = expression.strip()
    if text in CRON_MACROS:
        return text
    fields = text.split()
    usage = "5 fields 'minute hour day-of-month month day-of-week' (e.g. '0 3 * * 0') or one of " + ", ".join(
        CRON_MACROS
    )
    if len(fields) != len(CRON_FIELDS):
        raise ConfigError(f"cron schedule {expression!r}: has {len(fields)} fields; use {usage}")
    for value, (name, lowest, highest, names) in zip(fields, CRON_FIELDS, strict=True):
        for item in value.split(","):
            match = CRON_ITEM.match(item)
            ends = [] if match is None or match["range"] in "*?" else match["range"].split("-")
            bounds = [_cron_value(end, lowest, highest, names) for end in ends]
            valid = (
                match is not None
                and None not in bounds
                and (len(bounds) < 2 or bounds[0] <= bounds[1])  # type: ignore[operator]
                and (match["step"] is None or int(match["step"]) >= 1)
                and (match["range"] != "?" or name in {"day of month", "day of week"})
            )
            if not valid:
                raise ConfigError(
                    f"cron schedule {expression!r}: {name} {item!r} is not valid: "
                    f"use *, N, N-M or */S with N in {lowest}-{highest}"
                )
    return " ".join(fields)


def data_root_warning(cfg: ExperimentConfig) -> str | None:
    """Why a pod could not read its data, or None: a local path exists only on this machine (a
    synthetic set is drawn inside the pod, so a local root is fine then)."""
    data = cfg.data
    if data.draws_synthetic:
        return None
    unlabeled = data.unlabeled
    explicit = {"train_ann": data.train_ann, "train_images": data.train_images, "val_ann": data.val_ann}
    explicit["val_images"] = data.val_images
    locations = {f"data.{k}": v for k, v in explicit.items() if v is not None}
    if data.root is not None and len(locations) < len(explicit):  # the short form serves the rest
        locations = {"data.root": data.root, **locations}
    locations.update({f"data.unlabeled.images[{i}]": v for i, v in enumerate(unlabeled.images)})
    locations.update({f"data.unlabeled.videos[{i}]": v for i, v in enumerate(unlabeled.videos)})
    local = [f"{field}={value}" for field, value in locations.items() if not value.startswith("s3://")]
    if not local:
        return None
    return (
        f"{local[0]} is a local path{' (and ' + str(len(local) - 1) + ' more)' if len(local) > 1 else ''}: "
        f"a training pod cannot read it and will exit with code {cfg.backend.kubernetes.config_error_exit_code} "
        "(config error); upload the data and set data.root=s3://bucket/prefix (or s3:// locations)"
    )


@dataclass(frozen=True)
class RunPlan:
    """Names and locations of one pod-backend run, fixed before anything is submitted."""

    run_id: str
    job_name: str
    run_uri: str  # s3://bucket/<run_prefix>/<run_id>; the pod writes checkpoints/ and result.json here
    pod_config: ExperimentConfig  # what the pod trains with
    split: PublishedSplit | None = None  # the pipeline's split; None: `trs-pose k8s render` by hand


def dns_label(text: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """Lower-case RFC 1123 label: Kubernetes rejects anything else as a Job or label value."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    label = label[:max_length].rstrip("-")
    if not label:
        raise ValueError(f"{text!r} yields an empty Kubernetes name")
    return label


def default_run_id(cfg: ExperimentConfig, now: datetime | None = None) -> str:
    """`<name>-<UTC time>-<config hash>`: unique per submission, traceable to the config."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(cfg.to_yaml().encode()).hexdigest()[:6]
    return dns_label(f"{cfg.name}-{stamp}-{digest}")


def plan_run(cfg: ExperimentConfig, run_id: str | None = None, split: PublishedSplit | None = None) -> RunPlan:
    """Fix the run's names and the config its pod will see (S3 checkpoints, resume, local backend)."""
    run_id = dns_label(run_id or default_run_id(cfg))
    k8s = cfg.backend.kubernetes
    run_uri = "/".join(part for part in (f"s3://{cfg.storage.bucket}", k8s.run_prefix.strip("/"), run_id) if part)
    tree = cfg.model_dump(mode="json")
    tree["train"]["checkpoint"]["dir"] = f"{run_uri}/checkpoints"
    tree["train"]["checkpoint"]["resume"] = True
    tree["backend"]["kind"] = "local"
    return RunPlan(run_id, run_id, run_uri, ExperimentConfig.model_validate(tree), split)


def _labels(run_id: str, component: str) -> dict[str, str]:
    return {APP_LABEL: APP_NAME, "app.kubernetes.io/component": component, RUN_LABEL: run_id}


def _metadata(name: str, k8s: KubernetesConfig, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": k8s.namespace, "labels": dict(labels)}


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_ID,
        "runAsGroup": RUN_AS_ID,
        "fsGroup": RUN_AS_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_ID,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _volumes(k8s: KubernetesConfig, with_shm: bool) -> list[dict[str, Any]]:
    """The config from the pod's own annotation, plus the only writable places (rootfs is read-only)."""
    volumes: list[dict[str, Any]] = [
        {
            "name": "config",
            "downwardAPI": {
                "items": [
                    {"path": "config.yaml", "fieldRef": {"fieldPath": f"metadata.annotations['{CONFIG_ANNOTATION}']"}}
                ]
            },
        },
        {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
        {"name": "home", "emptyDir": {"sizeLimit": "8Gi"}},
        {"name": "work", "emptyDir": {"sizeLimit": "20Gi"}},
    ]
    if with_shm:  # DataLoader workers pass batches through /dev/shm; the runtime default is 64 MiB
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": k8s.shm_size}})
    return volumes


def _volume_mounts(with_shm: bool) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "home", "mountPath": HOME_DIR},
        {"name": "work", "mountPath": WORK_DIR},
    ]
    if with_shm:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return mounts


def _secret_env(secret: str, key: str, optional: bool) -> dict[str, Any]:
    return {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}}}


def container_env(
    cfg: ExperimentConfig, run_uri: str | None, split: PublishedSplit | None = None
) -> list[dict[str, Any]]:
    """Credentials by Secret reference only; plain settings (endpoint, caches) as values."""
    k8s = cfg.backend.kubernetes
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": HOME_DIR},
        {"name": "XDG_CACHE_HOME", "value": f"{HOME_DIR}/.cache"},
        {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "ZENML_ANALYTICS_OPT_IN", "value": "false"},
        {"name": "GX_ANALYTICS_ENABLED", "value": "false"},
        {"name": "MLFLOW_ENABLE_TELEMETRY", "value": "false"},
        {"name": "AWS_DEFAULT_REGION", "value": cfg.storage.region},
    ]
    if cfg.storage.endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": cfg.storage.endpoint_url})
    if run_uri:
        env.append({"name": RUN_URI_ENV, "value": run_uri})
    if split is not None:
        env.append({"name": SPLIT_ENV, "value": split.to_json()})
    env += [_secret_env(k8s.s3_secret, key, optional=False) for key in S3_SECRET_KEYS]
    env += [_secret_env(k8s.mlflow_secret, key, optional=key != "MLFLOW_TRACKING_URI") for key in MLFLOW_SECRET_KEYS]
    return env


def training_resources(k8s: KubernetesConfig) -> dict[str, dict[str, Any]]:
    requests: dict[str, Any] = {"cpu": k8s.cpu_request, "memory": k8s.memory_request}
    limits: dict[str, Any] = {"cpu": k8s.cpu_limit, "memory": k8s.memory_limit}
    if k8s.gpus:  # extended resources need request == limit
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = k8s.gpus
    return {"requests": requests, "limits": limits}


def _tolerations(k8s: KubernetesConfig, gpus: int) -> list[dict[str, Any]]:
    tolerations = [dict(t) for t in k8s.tolerations]
    if gpus and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def _config_annotation(config: ExperimentConfig) -> dict[str, str]:
    return {CONFIG_ANNOTATION: config.to_yaml()}


def training_container(
    cfg: ExperimentConfig, run_uri: str | None, command: list[str], name: str, split: PublishedSplit | None = None
) -> dict[str, Any]:
    k8s = cfg.backend.kubernetes
    return {
        "name": name,
        "image": k8s.image,
        "imagePullPolicy": k8s.image_pull_policy,
        "command": command,
        "workingDir": WORK_DIR,
        "env": container_env(cfg, run_uri, split),
        "resources": training_resources(k8s),
        "securityContext": container_security_context(),
        "volumeMounts": _volume_mounts(with_shm=True),
    }


def training_pod_spec(
    cfg: ExperimentConfig,
    run_uri: str | None,
    command: list[str],
    restart_policy: str,
    container_name: str,
    split: PublishedSplit | None = None,
) -> dict[str, Any]:
    """A hardened GPU pod that holds no service-account token: training never calls the API."""
    k8s = cfg.backend.kubernetes
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [training_container(cfg, run_uri, command, container_name, split)],
        "volumes": _volumes(k8s, with_shm=True),
        "terminationGracePeriodSeconds": 60,
    }
    if k8s.node_selector:
        spec["nodeSelector"] = dict(k8s.node_selector)
    tolerations = _tolerations(k8s, k8s.gpus)
    if tolerations:
        spec["tolerations"] = tolerations
    return spec


def train_command() -> list[str]:
    return ["trs-pose", "train", "--config", CONFIG_PATH]


def distributed_train_command() -> list[str]:
    """torchrun takes nodes, ranks and the rendezvous from the PET_* variables both operators set."""
    return ["torchrun", "--no-python", "trs-pose", "train", "--config", CONFIG_PATH]


def render_job(cfg: ExperimentConfig, plan: RunPlan) -> Manifest:
    """One GPU pod; retries disruptions, fails at once on a config error, resumes from S3."""
    k8s = cfg.backend.kubernetes
    labels = _labels(plan.run_id, "trainer")
    pod_spec = training_pod_spec(plan.pod_config, plan.run_uri, train_command(), "Never", CONTAINER_NAME, plan.split)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(plan.job_name, k8s, labels),
        "spec": {
            "backoffLimit": k8s.backoff_limit,
            "activeDeadlineSeconds": k8s.active_deadline_seconds,
            "ttlSecondsAfterFinished": k8s.ttl_seconds_after_finished,
            "completions": 1,
            "parallelism": 1,
            "podReplacementPolicy": "Failed",  # never two pods writing checkpoints at once
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER_NAME,
                            "operator": "In",
                            "values": [k8s.config_error_exit_code],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {
                "metadata": {"labels": dict(labels), "annotations": _config_annotation(plan.pod_config)},
                "spec": pod_spec,
            },
        },
    }


def render_trainjob(cfg: ExperimentConfig, plan: RunPlan) -> Manifest:
    """Kubeflow Trainer v2 on the stock runtime; hardening and the config go in as a runtime patch."""
    k8s = cfg.backend.kubernetes
    labels = _labels(plan.run_id, "trainer")
    pod_patch: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "volumes": _volumes(k8s, with_shm=True),
        "containers": [
            {
                "name": TRAINJOB_CONTAINER,
                "securityContext": container_security_context(),
                "volumeMounts": _volume_mounts(True),
            }
        ],
    }
    if k8s.node_selector:
        pod_patch["nodeSelector"] = dict(k8s.node_selector)
    tolerations = _tolerations(k8s, k8s.gpus)
    if tolerations:
        pod_patch["tolerations"] = tolerations
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": _metadata(plan.job_name, k8s, labels),
        "spec": {
            "runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": k8s.runtime},
            "activeDeadlineSeconds": k8s.active_deadline_seconds,
            "trainer": {
                "image": k8s.image,
                "command": distributed_train_command(),
                "numNodes": k8s.nodes,
                "numProcPerNode": k8s.processes_per_node,
                "resourcesPerNode": training_resources(k8s),
                "env": container_env(plan.pod_config, plan.run_uri, plan.split),
            },
            "runtimePatches": [
                {
                    "manager": "trs-pose.io/renderer",
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": TRAINJOB_CONTAINER,
                                        "template": {
                                            "spec": {
                                                "template": {
                                                    "metadata": {
                                                        "labels": dict(labels),
                                                        "annotations": _config_annotation(plan.pod_config),
                                                    },
                                                    "spec": pod_patch,
                                                }
                                            }
                                        },
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


def render_pytorchjob(cfg: ExperimentConfig, plan: RunPlan) -> Manifest:
    """Training Operator v1 (`kubeflow.org/v1`) for clusters not yet on Kubeflow Trainer v2."""
    k8s = cfg.backend.kubernetes
    labels = _labels(plan.run_id, "trainer")

    def replica(count: int) -> dict[str, Any]:
        return {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": {
                "metadata": {"labels": dict(labels), "annotations": _config_annotation(plan.pod_config)},
                "spec": training_pod_spec(
                    plan.pod_config,
                    plan.run_uri,
                    distributed_train_command(),
                    "OnFailure",
                    PYTORCHJOB_CONTAINER,
                    plan.split,
                ),
            },
        }

    replicas = {"Master": replica(1)}
    if k8s.nodes > 1:
        replicas["Worker"] = replica(k8s.nodes - 1)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": _metadata(plan.job_name, k8s, labels),
        "spec": {
            "nprocPerNode": str(k8s.processes_per_node),
            "runPolicy": {
                "backoffLimit": k8s.backoff_limit,
                "activeDeadlineSeconds": k8s.active_deadline_seconds,
                "ttlSecondsAfterFinished": k8s.ttl_seconds_after_finished,
                "cleanPodPolicy": "None",
            },
            "pytorchReplicaSpecs": replicas,
        },
    }


def render_cronjob(cfg: ExperimentConfig, schedule: str | None = None, always: bool = False) -> Manifest:
    """Scheduled retraining: a small CPU pod runs the whole pipeline, whose train step submits the GPU Job.

    The pipeline runs with `--if-changed`: a week without new labels, images or recipe ends after the
    split, registers nothing and costs no GPU (`always` trains on every tick instead). This is the
    only pod that holds an API token (the launcher's least-privilege ServiceAccount).
    """
    k8s = cfg.backend.kubernetes
    tree = cfg.model_dump(mode="json")
    tree["backend"]["kind"] = "kubernetes"
    pipeline_config = ExperimentConfig.model_validate(tree)
    name = dns_label(f"{cfg.name}-retrain")
    labels = {APP_LABEL: APP_NAME, "app.kubernetes.io/component": "retraining"}
    container = {
        "name": "pipeline",
        "image": k8s.image,
        "imagePullPolicy": k8s.image_pull_policy,
        # the train Job goes into the CronJob's own namespace, where its RBAC is, whatever the overlay
        "command": [
            "trs-pose",
            "run",
            "--no-local-services",
            *([] if always else ["--if-changed"]),
            "--config",
            CONFIG_PATH,
            "--set",
            "backend.kubernetes.namespace=$(POD_NAMESPACE)",
        ],
        "workingDir": WORK_DIR,
        "env": [
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            *container_env(pipeline_config, run_uri=None),
            # a scheduled run records into the team's ZenML server or does not start
            *[_secret_env(k8s.zenml_secret, key, optional=False) for key in ZENML_SECRET_KEYS],
        ],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        "securityContext": container_security_context(),
        "volumeMounts": _volume_mounts(with_shm=False),
    }
    metadata = _metadata(name, k8s, labels)
    metadata["annotations"] = {
        "checkov.io/skip1": "CKV_K8S_38=this pod submits the training Job, so it needs its API token"
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": check_cron(schedule or k8s.schedule),
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "backoffLimit": 0,  # the pipeline's own train Job retries; a failed pipeline waits for the next slot
                    "activeDeadlineSeconds": k8s.active_deadline_seconds + 3600,
                    "ttlSecondsAfterFinished": k8s.ttl_seconds_after_finished,
                    "template": {
                        "metadata": {"labels": dict(labels), "annotations": _config_annotation(pipeline_config)},
                        "spec": {
                            "restartPolicy": "Never",
                            "serviceAccountName": k8s.launcher_service_account,
                            "automountServiceAccountToken": True,
                            "enableServiceLinks": False,
                            "securityContext": pod_security_context(),
                            "containers": [container],
                            "volumes": _volumes(k8s, with_shm=False),
                        },
                    },
                },
            },
        },
    }


def render(
    cfg: ExperimentConfig, kind: WorkloadKind | Literal["all"] = "job", run_id: str | None = None
) -> list[Manifest]:
    """The manifests of one kind, or of all four, for one planned run."""
    plan = plan_run(cfg, run_id)
    renderers = {
        "job": lambda: render_job(cfg, plan),
        "trainjob": lambda: render_trainjob(cfg, plan),
        "pytorchjob": lambda: render_pytorchjob(cfg, plan),
        "cronjob": lambda: render_cronjob(cfg),
    }
    if kind == "all":
        return [renderers[k]() for k in WORKLOAD_KINDS]
    if kind not in renderers:
        raise ValueError(f"unknown workload kind {kind!r}; choose one of {', '.join(WORKLOAD_KINDS)} or all")
    return [renderers[kind]()]


def to_yaml(manifests: list[Manifest]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=False)
