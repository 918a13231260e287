"""The MLflow model registry: register a student, decide promotion, roll back, list.

A registered version is complete or absent: everything (model, config, manifest, plots, metrics) is
logged to the run first, and only then is the version created, with its evaluation tags set in the
same call; if giving it the `challenger` alias fails, the version is deleted again. Registration
never touches `champion`; only `promote` (by the rules in `decide_promotion`) and `rollback` do, and
every champion move is recorded in version tags and in a history kept on the registered model.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import yaml

from components.config import ExperimentConfig, RegistryConfig

CHALLENGER = "challenger"
CHAMPION = "champion"
MODEL_ARTIFACT = "student"
TAG_AP = "eval.AP"
TAG_VAL_FINGERPRINT = "eval.val_fingerprint"
TAG_METHOD = "train.method"
TAG_DECISION = "promotion.decision"
TAG_REASON = "promotion.reason"
TAG_CHAMPION_AP = "promotion.champion_ap"
TAG_CHAMPION_VERSION = "promotion.champion_version"
TAG_PREVIOUS_CHAMPION = "promotion.previous_champion"
TAG_REGISTRATION = "registration.status"  # "pending" until the version is complete
ABANDONED_AFTER_S = 600.0
MODEL_TAG_HISTORY = "champion.history"  # JSON list of earlier champions, oldest first
_SENSITIVE_KEY = re.compile(r"secret|password|passwd|token|credential|access_key|private_key", re.IGNORECASE)
_FAILED_RUN_STATES = {"FAILED", "KILLED"}


class RegistryError(RuntimeError):
    """Registration, promotion or rollback refused; the message says which rule."""


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str
    ap: float
    val_fingerprint: str


@dataclass(frozen=True)
class PromotionDecision:
    version: str
    promoted: bool
    decision: str  # "promoted", "kept champion", "forced", "already champion"
    reason: str
    champion_version: str | None
    champion_ap: float | None
    challenger_ap: float


@dataclass(frozen=True)
class VersionSummary:
    version: str
    aliases: tuple[str, ...]
    ap: float | None
    val_fingerprint: str | None
    decision: str | None
    run_id: str | None
    created: datetime


def resolve_tracking_uri(registry_cfg: RegistryConfig) -> str:
    """The config's URI, else $MLFLOW_TRACKING_URI, else the server `trs-pose services up` started."""
    if registry_cfg.tracking_uri:
        return registry_cfg.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    from components.services.manager import local_services

    return local_services().tracking_uri


def registry_client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _strip_userinfo(value: str) -> str:
    """`http://user:pass@host/x` -> `http://host/x`, so a URL never carries a password into MLflow."""
    parts = urlsplit(value)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return value


def redact(tree: Any) -> Any:
    """The config tree without credential-looking keys and without passwords inside URLs."""
    if isinstance(tree, Mapping):
        return {key: redact(value) for key, value in tree.items() if not _SENSITIVE_KEY.search(str(key))}
    if isinstance(tree, list | tuple):
        return [redact(value) for value in tree]
    if isinstance(tree, str):
        return _strip_userinfo(tree)
    return tree


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 0.001}} -> {"train.lr": "0.001"}: one MLflow param per config leaf."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return flat


def code_version(repo_root: Path | None = None) -> dict[str, str]:
    """Package version, and the git commit (with a dirty flag) when the code is a git checkout."""
    root = repo_root or Path(__file__).resolve().parents[2]
    try:
        version = metadata.version("trs-pose")
    except metadata.PackageNotFoundError:
        version = "unknown"
    info = {"code.package_version": version}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return info
    info["code.git_commit"] = commit
    info["code.git_dirty"] = str(bool(dirty)).lower()
    return info


@contextmanager
def _tracking(tracking_uri: str) -> Iterator[None]:
    """Point the fluent mlflow API at `tracking_uri` for the block, then restore what was there."""
    import mlflow

    previous_tracking, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)


@contextmanager
def _run(experiment: str, run_id: str | None, run_name: str) -> Iterator[str]:
    """The run to log into: the active one (left to its owner), the finished one named by `run_id`
    (reopened, then given back its status even if registration fails, so a retry stays possible), or
    a new one (ended FAILED if the block raises, so a half-logged run says so)."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and (run_id is None or active.info.run_id == run_id):
        yield active.info.run_id
        return
    if active is not None:
        raise RegistryError(f"run {active.info.run_id} is active; cannot register into run {run_id}")
    if run_id is None:
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name)
        status_on_error = "FAILED"
    else:
        status_on_error = mlflow.get_run(run_id).info.status
        run = mlflow.start_run(run_id=run_id)
    try:
        yield run.info.run_id
    except BaseException:
        mlflow.end_run(status=status_on_error)
        raise
    mlflow.end_run()


def _heatmaps_only(student: Any) -> Any:
    from components.registry.exported import HeatmapsOnly

    return HeatmapsOnly(student)


def _log_student(student: Any, cfg: ExperimentConfig, input_example: np.ndarray | None) -> Any:
    """Log the model (heatmaps out) with a signature from a real forward pass on the input example."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    exported = _heatmaps_only(copy.deepcopy(student)).cpu().eval()  # the caller's model stays as it is
    if input_example is None:  # the all-zero crop is the mean colour after ImageNet normalisation
        input_example = np.zeros((1, 3, *cfg.input.image_size), dtype=np.float32)
    with torch.no_grad():
        heatmaps = exported(torch.from_numpy(input_example)).float().numpy()
    signature = infer_signature(input_example, heatmaps)
    return mlflow.pytorch.log_model(
        exported,
        name=MODEL_ARTIFACT,
        signature=signature,
        input_example=input_example,
        serialization_format="pickle",
        code_paths=[str(Path(__file__).resolve().parents[1])],
        pip_requirements=_pip_requirements(),
    )


def _pip_requirements() -> list[str]:
    """Pinned to what is installed. Listing them skips MLflow's requirement inference, which loads
    the model in a subprocess (6-20 s a registration); pickle (with the `components` package shipped
    in `code_paths`, so loading needs no trs-pose install) skips torch.export, which also pins the
    batch size to the example's 1."""
    requirements = []
    for package in ("torch", "torchvision", "timm", "numpy", "mlflow"):
        try:
            requirements.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return requirements


def register_student(
    student: Any,
    cfg: ExperimentConfig,
    metrics: Mapping[str, float],
    val_fingerprint: str,
    *,
    split_manifest: str | Path | None = None,
    plots: Sequence[str | Path] = (),
    artifacts: Mapping[str, str | Path] | None = None,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    input_example: np.ndarray | None = None,
) -> RegisteredVersion:
    """Log the student and everything that explains it, then create a new version of
    `cfg.registry.model_name` with alias `challenger`. `metrics` must hold "AP" on the validation set
    whose annotation file hashes to `val_fingerprint` (promotion compares only like with like).

    Logs into the active run, the run `run_id`, or a new run in `cfg.registry.experiment`.
    `artifacts` maps an artifact folder to an extra file to log there.
    """
    import mlflow

    if "AP" not in metrics:
        raise RegistryError(f"metrics must include 'AP' to register a model; got {sorted(metrics)}")
    for path in [*plots, *(artifacts or {}).values(), *([split_manifest] if split_manifest else [])]:
        if not Path(path).is_file():
            raise RegistryError(f"{path}: artifact file to log with the model does not exist; nothing registered")
    uri = tracking_uri or resolve_tracking_uri(cfg.registry)
    client = registry_client(uri)
    if run_id is not None:
        status = client.get_run(run_id).info.status
        if status in _FAILED_RUN_STATES:
            raise RegistryError(f"run {run_id} ended {status}; nothing is registered from a failed run")

    with _tracking(uri), _run(cfg.registry.experiment, run_id, cfg.name) as active_run_id:
        tree = redact(cfg.model_dump(mode="json"))
        logged = client.get_run(active_run_id).data.params
        mlflow.log_params({k: v for k, v in flatten_params(tree).items() if k not in logged})  # params are write-once
        mlflow.log_text(yaml.safe_dump(tree, sort_keys=False), "config/resolved.yaml")
        mlflow.set_tags({**code_version(), TAG_VAL_FINGERPRINT: val_fingerprint, TAG_METHOD: cfg.train.method})
        mlflow.log_metrics({f"val.{key}": float(value) for key, value in metrics.items()})
        if split_manifest:
            mlflow.log_artifact(str(split_manifest), artifact_path="split")
        for plot in plots:
            mlflow.log_artifact(str(plot), artifact_path="plots")
        for folder, path in (artifacts or {}).items():
            mlflow.log_artifact(str(path), artifact_path=folder)
        model_info = _log_student(student, cfg, input_example)
        version = _create_version(client, cfg.registry.model_name, model_info, active_run_id, metrics, val_fingerprint, cfg)
    return RegisteredVersion(
        cfg.registry.model_name, version, active_run_id, f"models:/{cfg.registry.model_name}/{version}",
        float(metrics["AP"]), val_fingerprint,
    )


def _create_version(
    client: Any, name: str, model_info: Any, run_id: str, metrics: Mapping[str, float], val_fingerprint: str, cfg: ExperimentConfig
) -> str:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="TRS-pose students (heatmaps from a [1,3,H,W] crop)")
    _delete_abandoned_versions(client, name)
    tags = {
        TAG_AP: repr(float(metrics["AP"])),
        TAG_VAL_FINGERPRINT: val_fingerprint,
        TAG_METHOD: cfg.train.method,
        TAG_REGISTRATION: "pending",
        **{f"eval.{key}": repr(float(value)) for key, value in metrics.items() if key != "AP"},
    }
    created = client.create_model_version(
        name, source=f"models:/{model_info.model_id}", run_id=run_id, tags=tags, model_id=model_info.model_id
    )
    try:
        client.set_registered_model_alias(name, CHALLENGER, created.version)
        client.set_model_version_tag(name, created.version, TAG_REGISTRATION, "complete")
    except BaseException:
        client.delete_model_version(name, created.version)
        raise
    return str(created.version)


def _delete_abandoned_versions(client: Any, name: str, older_than_s: float = ABANDONED_AFTER_S) -> list[str]:
    """Versions still "pending" long after creation belong to a registration that was killed between
    creating the version and finishing it (no exception handler ran); remove them."""
    now_ms = datetime.now(UTC).timestamp() * 1000
    abandoned = [
        str(v.version)
        for v in client.search_model_versions(f"name = '{name}'")
        if v.tags.get(TAG_REGISTRATION) == "pending" and now_ms - v.creation_timestamp > older_than_s * 1000
    ]
    for version in abandoned:
        client.delete_model_version(name, version)
    return abandoned


def decide_promotion(
    challenger_ap: float,
    challenger_fingerprint: str | None,
    champion_ap: float | None,
    champion_fingerprint: str | None,
    margin: float,
) -> tuple[bool, str]:
    """Promote only with no champion yet, or on the same validation set with AP > champion + margin."""
    if champion_ap is None:
        return True, "no champion yet"
    if not challenger_fingerprint or challenger_fingerprint != champion_fingerprint:
        return False, (
            f"validation sets differ (challenger {str(challenger_fingerprint)[:12]}, champion "
            f"{str(champion_fingerprint)[:12]}); APs are not comparable, promote by hand with --force"
        )
    if challenger_ap > champion_ap + margin:
        return True, f"AP {challenger_ap:.4f} beats champion {champion_ap:.4f} by more than {margin:.4f}"
    return False, f"AP {challenger_ap:.4f} does not beat champion {champion_ap:.4f} by more than {margin:.4f}"


def _float_tag(tags: Mapping[str, str], key: str) -> float | None:
    value = tags.get(key)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def current_champion(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _history(client: Any, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags or {}
    return list(json.loads(tags.get(MODEL_TAG_HISTORY, "[]")))


def promote(client: Any, name: str, version: str | int, margin: float, force: bool = False) -> PromotionDecision:
    """Move `champion` to `version` if `decide_promotion` allows (or `force`); record why either way."""
    version = str(version)
    candidate = client.get_model_version(name, version)
    if candidate.tags.get(TAG_REGISTRATION) == "pending":
        raise RegistryError(f"{name} version {version} is an unfinished registration; it cannot be promoted")
    challenger_ap = _float_tag(candidate.tags, TAG_AP)
    if challenger_ap is None:
        raise RegistryError(f"{name} version {version} has no {TAG_AP} tag; it was not registered by trs-pose")
    champion = current_champion(client, name)
    champion_version = str(champion.version) if champion is not None else None
    champion_ap = _float_tag(champion.tags, TAG_AP) if champion is not None else None
    if champion_version == version:
        return PromotionDecision(version, False, "already champion", "it is the champion", version, champion_ap, challenger_ap)
    allowed, reason = decide_promotion(
        challenger_ap,
        candidate.tags.get(TAG_VAL_FINGERPRINT),
        champion_ap if champion is not None else None,
        champion.tags.get(TAG_VAL_FINGERPRINT) if champion is not None else None,
        margin,
    )
    if champion is not None and champion_ap is None:
        allowed, reason = True, f"champion version {champion_version} has no {TAG_AP} tag"
    decision = "promoted" if allowed else "kept champion"
    if force and not allowed:
        allowed, decision, reason = True, "forced", f"forced by hand over: {reason}"
    tags = {
        TAG_DECISION: decision,
        TAG_REASON: reason,
        TAG_CHAMPION_AP: "" if champion_ap is None else repr(champion_ap),
        TAG_CHAMPION_VERSION: champion_version or "",
        "promotion.margin": repr(margin),
        "promotion.time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if allowed and champion_version is not None:
        tags[TAG_PREVIOUS_CHAMPION] = champion_version
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if allowed:
        if champion_version is not None:
            history = [*_history(client, name), champion_version]
            client.set_registered_model_tag(name, MODEL_TAG_HISTORY, json.dumps(history))
        client.set_registered_model_alias(name, CHAMPION, version)
    return PromotionDecision(version, allowed, decision, reason, champion_version, champion_ap, challenger_ap)


def rollback(client: Any, name: str) -> tuple[str, str]:
    """Move `champion` back to the previous champion; returns (from_version, to_version)."""
    champion = current_champion(client, name)
    if champion is None:
        raise RegistryError(f"model {name} has no champion to roll back")
    history = _history(client, name)
    if not history:
        raise RegistryError(f"model {name}: version {champion.version} is the first champion; nothing to roll back to")
    previous = history.pop()
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, MODEL_TAG_HISTORY, json.dumps(history))
    when = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, str(champion.version), "rollback.replaced_by", f"{previous} at {when}")
    client.set_model_version_tag(name, previous, "rollback.restored_from", f"{champion.version} at {when}")
    return str(champion.version), previous


def list_versions(client: Any, name: str) -> list[VersionSummary]:
    """Every version of `name`, newest first, with aliases, AP and the last promotion decision."""
    versions = client.search_model_versions(f"name = '{name}'")
    aliases: dict[str, list[str]] = {}
    for alias, version in (client.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = [
        VersionSummary(
            version=str(v.version),
            aliases=tuple(sorted(aliases.get(str(v.version), []))),
            ap=_float_tag(v.tags, TAG_AP),
            val_fingerprint=v.tags.get(TAG_VAL_FINGERPRINT),
            decision=v.tags.get(TAG_DECISION),
            run_id=v.run_id,
            created=datetime.fromtimestamp(v.creation_timestamp / 1000, UTC),
        )
        for v in versions
    ]
    return sorted(rows, key=lambda row: int(row.version), reverse=True)
