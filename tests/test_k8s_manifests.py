"""Every manifest in k8s/ and every rendered one is valid for Kubernetes 1.37 (strict) or its CRD,
hardened, and says what the pod backend relies on (resume, retry policy, secrets by reference)."""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from cli.main import cli
from components.config import ExperimentConfig, load_config
from components.kubernetes.manifests import (
    CONFIG_ANNOTATION,
    MLFLOW_SECRET_KEYS,
    S3_SECRET_KEYS,
    dns_label,
    plan_run,
    render,
)
from tests.kustomize import KustomizeError, build

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
K8S_VERSION = "1.37.0"  # the newest kubernetes-validate ships
CRD_FILES = {
    "TrainJob": "trainer.kubeflow.org_trainjobs.v2.3.0.yaml",
    "PyTorchJob": "kubeflow.org_pytorchjobs.v1.9.0.yaml",
}
CHECKOV = REPO / ".venv-tools" / "bin" / "checkov"
# The security set, explained in docs/kubernetes.md; keep the two lists in step.
CHECKOV_CHECKS = (
    "CKV_K8S_10,CKV_K8S_11,CKV_K8S_12,CKV_K8S_13,CKV_K8S_14,CKV_K8S_16,CKV_K8S_17,CKV_K8S_18,CKV_K8S_19,"
    "CKV_K8S_20,CKV_K8S_21,CKV_K8S_22,CKV_K8S_23,CKV_K8S_25,CKV_K8S_28,CKV_K8S_29,CKV_K8S_30,CKV_K8S_31,"
    "CKV_K8S_37,CKV_K8S_38,CKV_K8S_39,CKV_K8S_40,CKV_K8S_49,CKV_K8S_155,CKV_K8S_156,CKV_K8S_157,CKV_K8S_158,"
    "CKV2_K8S_6,CKV_DOCKER_2,CKV_DOCKER_3,CKV_DOCKER_8"
)


def multi_gpu_config() -> ExperimentConfig:
    return load_config(
        None,
        [
            "backend.kind=kubernetes",
            "backend.kubernetes.gpus=4",
            "backend.kubernetes.nodes=2",
            "backend.kubernetes.processes_per_node=4",
            "backend.kubernetes.node_selector={cloud.google.com/gke-accelerator: nvidia-h100-80gb}",
            "backend.kubernetes.tolerations=[{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]",
            "storage.endpoint_url=http://seaweedfs:8333",
        ],
    )


CONFIGS = {"default": ExperimentConfig(), "multi_gpu": multi_gpu_config()}


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def strict(schema: Any) -> Any:
    """Reject unknown fields, as `kubectl apply --validate=strict` does, where the CRD keeps none."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def crd_validators(k8s_schemas: Path) -> dict[str, jsonschema.protocols.Validator]:
    validators = {}
    for kind, name in CRD_FILES.items():
        crd = yaml.safe_load((k8s_schemas / name).read_text())
        version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        schema = strict(version["schema"]["openAPIV3Schema"])
        validators[kind] = jsonschema.Draft7Validator(schema)
    return validators


def validate(manifest: dict[str, Any], crd_validators: dict[str, Any] | None) -> None:
    kind = manifest["kind"]
    if kind in CRD_FILES:
        if crd_validators is None:
            pytest.skip("CRD schemas absent")
        crd_validators[kind].validate(manifest)
    else:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def pod_specs(node: Any) -> Iterator[dict[str, Any]]:
    """Every pod spec inside a manifest, however deep (Job, CronJob, PyTorchJob replicas)."""
    if isinstance(node, dict):
        if "containers" in node and isinstance(node["containers"], list) and "image" in node["containers"][0]:
            yield node
        for value in node.values():
            yield from pod_specs(value)
    elif isinstance(node, list):
        for item in node:
            yield from pod_specs(item)


# ---- schema validity ----


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_rendered_builtin_manifests_are_strictly_valid(name: str) -> None:
    for manifest in render(CONFIGS[name], "all", run_id="run-1"):
        if manifest["kind"] not in CRD_FILES:
            validate(manifest, None)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_rendered_trainjob_and_pytorchjob_match_their_crds(name: str, crd_validators: dict[str, Any]) -> None:
    for kind in ("trainjob", "pytorchjob"):
        (manifest,) = render(CONFIGS[name], kind, run_id="run-1")  # type: ignore[arg-type]
        validate(manifest, crd_validators)


def test_strict_validation_catches_an_unknown_field(crd_validators: dict[str, Any]) -> None:
    (job,) = render(ExperimentConfig(), "job", run_id="run-1")
    job["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    (trainjob,) = render(ExperimentConfig(), "trainjob", run_id="run-1")
    trainjob["spec"]["trainer"]["numGpus"] = 1
    with pytest.raises(jsonschema.ValidationError):
        crd_validators["TrainJob"].validate(trainjob)


@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_file_in_k8s_is_valid(path: Path, request: pytest.FixtureRequest) -> None:
    docs = documents(path)
    needs_crds = any(doc["kind"] in CRD_FILES for doc in docs)
    validators = request.getfixturevalue("crd_validators") if needs_crds else None
    for doc in docs:
        validate(doc, validators)


@pytest.mark.parametrize("overlay", ["base", "overlays/dev", "overlays/prod"])
def test_kustomized_outputs_are_valid(overlay: str) -> None:
    manifests = build(K8S / overlay)
    assert {m["kind"] for m in manifests} >= {"ServiceAccount", "Role", "RoleBinding", "CronJob", "NetworkPolicy"}
    for manifest in manifests:
        validate(manifest, None)


def test_overlays_change_what_they_claim() -> None:
    dev = {m["kind"]: m for m in build(K8S / "overlays/dev")}
    prod = {m["kind"]: m for m in build(K8S / "overlays/prod")}
    assert {m["metadata"]["namespace"] for m in dev.values()} == {"trs-pose-dev"}
    assert dev["RoleBinding"]["subjects"][0]["namespace"] == "trs-pose-dev"
    assert dev["CronJob"]["spec"]["schedule"] == "0 2 * * *"
    prod_image = next(pod_specs(prod["CronJob"]))["containers"][0]["image"]
    assert "@sha256:" in prod_image and ":0.1.0" not in prod_image


def test_kustomize_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(KustomizeError, match="commonLabels"):
        build(tmp_path)


# ---- what the pod backend relies on ----


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_pod_is_hardened(name: str) -> None:
    manifests = render(CONFIGS[name], "all", run_id="run-1")
    manifests += [doc for path in k8s_files() for doc in documents(path)]
    specs = [spec for manifest in manifests for spec in pod_specs(manifest)]
    assert len(specs) >= 5
    for spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert {"requests", "limits"} <= set(container["resources"])
            writable = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in mounts}
            assert {"/tmp", "/home/trs"} <= writable
            assert ":latest" not in container["image"]
        if "trainer" in spec["containers"][0]["name"] or spec["containers"][0]["name"] == "pytorch":
            assert spec["automountServiceAccountToken"] is False


def test_credentials_come_only_from_secret_references() -> None:
    secret_names = set(S3_SECRET_KEYS) | set(MLFLOW_SECRET_KEYS)
    for manifest in render(multi_gpu_config(), "all", run_id="run-1"):
        text = json.dumps(manifest)
        envs = [env for spec in pod_specs(manifest) for c in spec["containers"] for env in c["env"]]
        if manifest["kind"] == "TrainJob":
            envs += manifest["spec"]["trainer"]["env"]
        credentials = [env for env in envs if env["name"] in secret_names]
        assert {env["name"] for env in credentials} == secret_names, manifest["kind"]
        assert all("value" not in env and "secretKeyRef" in env["valueFrom"] for env in credentials)
        assert "secretAccessKey" not in text and "AKIA" not in text


def test_job_retries_disruptions_fails_config_errors_and_uses_the_gpu() -> None:
    cfg = multi_gpu_config()
    (job,) = render(cfg, "job", run_id="run-1")
    spec = job["spec"]
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules
    fail = next(rule for rule in rules if rule["action"] == "FailJob")
    assert fail["onExitCodes"]["values"] == [cfg.backend.kubernetes.config_error_exit_code]
    assert spec["backoffLimit"] == cfg.backend.kubernetes.backoff_limit
    assert spec["activeDeadlineSeconds"] == cfg.backend.kubernetes.active_deadline_seconds
    assert spec["ttlSecondsAfterFinished"] == cfg.backend.kubernetes.ttl_seconds_after_finished
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert (
        container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"] == 4
    )
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert {t["key"] for t in pod["tolerations"]} == {"dedicated", "nvidia.com/gpu"}
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert container["command"][:2] == ["trs-pose", "train"]
    assert fail["onExitCodes"]["containerName"] == container["name"]  # the API rejects a rule naming no container
    assert spec["podReplacementPolicy"] == "Failed"  # the only value allowed with a podFailurePolicy


def test_the_pod_config_resumes_from_s3_and_trains_locally() -> None:
    cfg = load_config(None, ["backend.kind=kubernetes", "storage.bucket=b", "train.checkpoint.resume=false"])
    (job,) = render(cfg, "job", run_id="Run_1")
    annotation = job["spec"]["template"]["metadata"]["annotations"][CONFIG_ANNOTATION]
    pod_cfg = ExperimentConfig.model_validate(yaml.safe_load(annotation))
    assert pod_cfg.train.checkpoint.dir == "s3://b/runs/run-1/checkpoints"
    assert pod_cfg.train.checkpoint.resume is True
    assert pod_cfg.backend.kind == "local"
    assert pod_cfg.train.iterations == cfg.train.iterations
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRS_POSE_RUN_URI"] == "s3://b/runs/run-1"


def test_distributed_workloads_take_nodes_and_processes_from_config() -> None:
    cfg = multi_gpu_config()
    trainjob, pytorchjob = render(cfg, "trainjob", run_id="r")[0], render(cfg, "pytorchjob", run_id="r")[0]
    trainer = trainjob["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)
    assert trainer["command"][0] == "torchrun"
    assert trainjob["spec"]["runtimeRef"]["name"] == "torch-distributed"
    replicas = pytorchjob["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 1)
    assert pytorchjob["spec"]["nprocPerNode"] == "4"
    single = render(ExperimentConfig(), "pytorchjob", run_id="r")[0]
    assert "Worker" not in single["spec"]["pytorchReplicaSpecs"]


def test_role_is_least_privilege() -> None:
    (role,) = [d for d in documents(K8S / "base" / "rbac.yaml") if d["kind"] == "Role"]
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("batch",), ("jobs",)): {"create", "get", "watch", "delete"},
        (("trainer.kubeflow.org",), ("trainjobs",)): {"create", "get", "delete"},
        (("kubeflow.org",), ("pytorchjobs",)): {"create", "get", "delete"},
        (("",), ("pods", "pods/log")): {"get", "list", "watch"},
    }


def test_names_are_valid_kubernetes_labels() -> None:
    assert dns_label("My_Experiment.v2 (test)") == "my-experiment-v2-test"
    assert len(dns_label("x" * 200)) <= 52
    with pytest.raises(ValueError):
        dns_label("___")
    assert plan_run(ExperimentConfig()).job_name.startswith("trs-pose-")


# ---- command line ----


def test_cli_render_and_schedule() -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["k8s", "render", "--kind", "all", "--run-id", "r1", "--set", "backend.kubernetes.gpus=2"]
    )
    assert result.exit_code == 0, result.output
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.output)]
    assert kinds == ["Job", "TrainJob", "PyTorchJob", "CronJob"]
    demo = str(REPO / "configs" / "demo.yaml")
    result = runner.invoke(cli, ["schedule", "--config", demo, "--cron", "30 4 * * 1"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["spec"]["schedule"] == "30 4 * * 1"
    assert runner.invoke(cli, ["schedule", "--config", demo, "--cron", "every sunday"]).exit_code == 2
    command = next(pod_specs(yaml.safe_load(result.output)))["containers"][0]["command"]
    assert command[:4] == ["trs-pose", "run", "--no-local-services", "--if-changed"]  # retrains only on new inputs
    always = runner.invoke(cli, ["schedule", "--config", demo, "--always"])
    assert (
        always.exit_code == 0
        and "--if-changed" not in next(pod_specs(yaml.safe_load(always.output)))["containers"][0]["command"]
    )


# ---- security scan ----


def test_checkov_finds_no_failed_checks_in_the_security_set() -> None:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} is absent: `make tools` installs it (requirements-tools.txt)")
    completed = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(K8S),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--check",
            CHECKOV_CHECKS,
            "--quiet",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    reports = json.loads(completed.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})" for r in reports for c in r["results"]["failed_checks"]
    ]
    passed = sum(r["summary"]["passed"] for r in reports)
    assert not failed, failed
    assert passed > 20 and completed.returncode == 0, completed.stderr[-2000:]


def test_strict_helper_keeps_preserved_objects_open() -> None:
    schema = {"properties": {"a": {"type": "object", "properties": {}, "x-kubernetes-preserve-unknown-fields": True}}}
    tightened = strict(copy.deepcopy(schema))
    assert tightened["additionalProperties"] is False
    assert "additionalProperties" not in tightened["properties"]["a"]


def without_config(manifest: Any) -> Any:
    """The manifest minus the embedded config, which changes whenever any config default does."""
    if isinstance(manifest, dict):
        return {k: without_config(v) for k, v in manifest.items() if k != CONFIG_ANNOTATION}
    if isinstance(manifest, list):
        return [without_config(item) for item in manifest]
    return manifest


@pytest.mark.parametrize("name", ["job.yaml", "trainjob.yaml", "pytorchjob.yaml", "cronjob.yaml"])
def test_base_workloads_match_the_renderer(name: str, tmp_path: Path) -> None:
    header = (K8S / "base" / name).read_text().splitlines()[0]
    command = shlex.split(header.split("`")[1])
    assert command[:3] == ["trs-pose", "k8s", "render"], header
    result = CliRunner().invoke(cli, [*command[1:], "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    fresh = documents(tmp_path / name)
    assert without_config(fresh) == without_config(documents(K8S / "base" / name)), (
        f"k8s/base/{name} is stale: rerun {header.split('`')[1]} --out-dir k8s/base"
    )
