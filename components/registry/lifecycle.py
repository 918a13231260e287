"""The model lifecycle in the MLflow registry: register a student as a new version, decide promotion,
promote, roll back, list.

A registered version is complete or absent: everything (model, manifest, plots, metrics) is logged to
the run first, and only then is the version created, with its evaluation tags set in the same call;
if giving it the `challenger` alias fails, the version is deleted again. Registration never touches
`champion`; only `promote` (by the rules in `decide_promotion`) and `rollback` do, and every champion
move is recorded in version tags and in a history kept on the registered model.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from components.config import ExperimentConfig
from components.errors import TrsPoseError
from components.registry.mlflow_client import MlflowClientLike, registry_client, resolve_tracking_uri
from components.registry.run_logging import TAG_METHOD, TAG_VAL_FINGERPRINT, log_files, log_validation, mlflow_run

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from torch import nn

CHALLENGER = "challenger"
CHAMPION = "champion"
TAG_ONNX = "serving.onnx"  # version tag: artifact URI of the version's model.onnx
TAG_AP = "eval.AP"
TAG_DECISION = "promotion.decision"
TAG_REASON = "promotion.reason"
TAG_CHAMPION_AP = "promotion.champion_ap"
TAG_CHAMPION_VERSION = "promotion.champion_version"
TAG_PREVIOUS_CHAMPION = "promotion.previous_champion"
TAG_REGISTRATION = "registration.status"  # "pending" until the version is complete
TAG_KEYPOINT_COUNT = "keypoints.count"
TAG_KEYPOINT_NAMES = "keypoints.names"  # comma-separated, in the heatmap channels' order
KEYPOINTS_FOLDER = "keypoints"  # run artifact folder of keypoints.json: names, skeleton, flip pairs, sigmas
ABANDONED_AFTER_S = 600.0
RESULTS_FOLDER = "evaluation"  # the validation results a version was scored on, logged beside it
MODEL_TAG_HISTORY = "champion.history"  # JSON list of earlier champions, oldest first
_FAILED_RUN_STATES = {"FAILED", "KILLED"}


class RegistryError(TrsPoseError, RuntimeError):
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
    onnx: str | None = None  # artifact URI of the version's model.onnx, when it carries one


def register_student(
    student: nn.Module,
    cfg: ExperimentConfig,
    metrics: Mapping[str, float],
    val_fingerprint: str,
    *,
    split_manifest: str | Path | None = None,
    plots: Sequence[str | Path] = (),
    artifacts: Mapping[str, str | Path] | None = None,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    step: int = 0,
    tags: Mapping[str, str] | None = None,
) -> RegisteredVersion:
    """Log the student and everything that explains it, then create a new version of
    `cfg.registry.model_name` with alias `challenger`. `metrics` must hold "AP" on the validation set
    whose annotation file hashes to `val_fingerprint` (promotion compares only like with like); they
    are logged as `val.*` at training step `step`.

    Logs into the run `run_id` (opened by `run_logging.open_run`, which logged its config; it keeps
    its status), or into a new run in `cfg.registry.experiment` (ended FAILED if registration fails).
    `artifacts` maps an artifact folder to an extra file to log there; `tags` go on the version
    (lineage: the inputs' fingerprint, the weights a warm start began from).
    """
    if "AP" not in metrics:
        raise RegistryError(f"metrics must include 'AP' to register a model; got {sorted(metrics)}")
    files = [
        *([("split", split_manifest)] if split_manifest else []),
        *(("plots", plot) for plot in plots),
        *(artifacts or {}).items(),
    ]
    for _, path in files:
        if not Path(path).is_file():
            raise RegistryError(f"{path}: artifact file to log with the model does not exist; nothing registered")
    client = registry_client(tracking_uri or resolve_tracking_uri(cfg.registry))
    if run_id is not None:
        status = client.get_run(run_id).info.status
        if status in _FAILED_RUN_STATES:
            raise RegistryError(f"run {run_id} ended {status}; nothing is registered from a failed run")

    with _run_to_log_into(client, cfg, run_id) as into_run_id:
        # model_logging brings in torch; imported here so that list/promote/rollback stay light
        from components.registry.model_logging import log_student

        log_validation(client, into_run_id, metrics, val_fingerprint, step)
        log_files(client, into_run_id, files)
        log_keypoint_set(client, into_run_id, cfg)
        logged = log_student(client, into_run_id, student, cfg, step)
        version = _create_version(
            client,
            cfg.registry.model_name,
            logged.model_id,
            into_run_id,
            metrics,
            val_fingerprint,
            cfg,
            logged.onnx_uri,
            tags or {},
        )
    return RegisteredVersion(
        cfg.registry.model_name,
        version,
        into_run_id,
        f"models:/{cfg.registry.model_name}/{version}",
        float(metrics["AP"]),
        val_fingerprint,
    )


@contextmanager
def _run_to_log_into(client: MlflowClientLike, cfg: ExperimentConfig, run_id: str | None) -> Iterator[str]:
    """The existing run `run_id` (left as it is), else a new run with the config logged."""
    if run_id is not None:
        yield run_id
        return
    with mlflow_run(client, cfg, cfg.name) as new_run_id:
        yield new_run_id


def log_keypoint_set(client: MlflowClientLike, run_id: str, cfg: ExperimentConfig) -> None:
    """The version's keypoint set (names, skeleton, flip pairs, sigmas) as `keypoints/keypoints.json`."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "keypoints.json"
        path.write_text(json.dumps(cfg.keypoints.keypoint_set().as_dict(), indent=1))
        log_files(client, run_id, [(KEYPOINTS_FOLDER, path)])


def _create_version(
    client: MlflowClientLike,
    name: str,
    model_id: str,
    run_id: str,
    metrics: Mapping[str, float],
    val_fingerprint: str,
    cfg: ExperimentConfig,
    onnx_uri: str | None,
    extra_tags: Mapping[str, str],
) -> str:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="TRS-pose students: image + person boxes in, keypoints out")
    _delete_abandoned_versions(client, name, run_id=run_id)
    keypoints = cfg.keypoints.keypoint_set()
    tags = {
        TAG_AP: repr(float(metrics["AP"])),
        TAG_VAL_FINGERPRINT: val_fingerprint,
        TAG_METHOD: cfg.train.method,
        TAG_KEYPOINT_COUNT: str(keypoints.num_keypoints),
        TAG_KEYPOINT_NAMES: ",".join(keypoints.names)[:4000],
        TAG_REGISTRATION: "pending",
        **({TAG_ONNX: onnx_uri} if onnx_uri else {}),
        **{f"eval.{key}": repr(float(value)) for key, value in metrics.items() if key != "AP"},
        **extra_tags,
    }
    created = client.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
    )
    try:
        client.set_registered_model_alias(name, CHALLENGER, created.version)
        client.set_model_version_tag(name, created.version, TAG_REGISTRATION, "complete")
    except BaseException:
        client.delete_model_version(name, created.version)
        raise
    return str(created.version)


def _delete_abandoned_versions(
    client: MlflowClientLike, name: str, older_than_s: float = ABANDONED_AFTER_S, run_id: str | None = None
) -> list[str]:
    """Versions still "pending" long after creation belong to a registration that was killed between
    creating the version and finishing it (no exception handler ran); remove them. A pending version
    of `run_id` itself is an earlier attempt of this registration (retried, or resumed after an outage
    that also kept its cleanup from reaching the server): removed whatever its age."""
    now_ms = datetime.now(UTC).timestamp() * 1000
    abandoned = [
        str(v.version)
        for v in client.search_model_versions(f"name = '{name}'")
        if v.tags.get(TAG_REGISTRATION) == "pending"
        and (now_ms - v.creation_timestamp > older_than_s * 1000 or (run_id is not None and v.run_id == run_id))
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


def current_champion(client: MlflowClientLike, name: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def champion_validation(
    client: MlflowClientLike, champion: ModelVersion, val_fingerprint: str, dst: str | Path
) -> tuple[dict[str, float], Path | None]:
    """The champion's validation metrics (its run's `val.*`) and, when it was scored on the same
    validation set and kept them, its COCO results file, downloaded into `dst`."""
    if not champion.run_id:
        return {}, None
    metrics = {
        key.removeprefix("val."): float(value)
        for key, value in client.get_run(champion.run_id).data.metrics.items()
        if key.startswith("val.")
    }
    if champion.tags.get(TAG_VAL_FINGERPRINT) != val_fingerprint:
        return metrics, None
    stored = [
        item.path for item in client.list_artifacts(champion.run_id, RESULTS_FOLDER) if item.path.endswith(".json")
    ]
    if not stored:
        return metrics, None  # registered before results were kept
    Path(dst).mkdir(parents=True, exist_ok=True)
    return metrics, Path(client.download_artifacts(champion.run_id, stored[0], str(dst)))


def _history(client: MlflowClientLike, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags or {}
    return list(json.loads(tags.get(MODEL_TAG_HISTORY, "[]")))


def promote(
    client: MlflowClientLike, name: str, version: str | int, margin: float, force: bool = False
) -> PromotionDecision:
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
        return PromotionDecision(
            version, False, "already champion", "it is the champion", version, champion_ap, challenger_ap
        )
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


def rollback(client: MlflowClientLike, name: str) -> tuple[str, str]:
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


def list_versions(client: MlflowClientLike, name: str) -> list[VersionSummary]:
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
            onnx=v.tags.get(TAG_ONNX),
        )
        for v in versions
    ]
    return sorted(rows, key=lambda row: int(row.version), reverse=True)
