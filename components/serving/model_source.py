"""Where a predictor (or a warm start's weights) comes from: a checkpoint, or a registry URI
(`models:/NAME@ALIAS`, `models:/NAME/VERSION`).

A registered version holds the student (inside its MLflow model) and, since registration exports it,
its `model.onnx` (a run artifact named by the version's `serving.onnx` tag). `onnx_runtime` runs
either source in ONNX Runtime, on the version's export (exported on the spot when there is none,
or when flip test is asked for: the registered export is the plain one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from components.config import ExperimentConfig
from components.errors import TrsPoseError
from components.serving.runtime import OnnxRuntime

if TYPE_CHECKING:
    from components.engine.warm_start import InitialWeights

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


class ModelSourceError(TrsPoseError, LookupError):
    """The model named does not exist (or is not a trs-pose model); the message names it and where it was looked up."""


@dataclass(frozen=True)
class RegisteredModel:
    uri: str
    name: str
    version: str
    tracking_uri: str
    model_uri: str  # the version's MLflow model
    onnx_uri: str | None  # artifact URI of its model.onnx, when it has one
    download_uri: str  # where the registry keeps the model's files (read without MLflow's process-wide URIs)


def find_registered(uri: str, tracking_uri: str) -> RegisteredModel:
    """The version `uri` names in the registry at `tracking_uri`."""
    from mlflow.exceptions import MlflowException

    from components.registry.lifecycle import TAG_ONNX
    from components.registry.mlflow_client import registry_client

    match = MODEL_URI.match(uri)
    if match is None:
        raise ModelSourceError(f"{uri}: not a registry URI; expected models:/NAME@ALIAS or models:/NAME/VERSION")
    client = registry_client(tracking_uri)  # an unreachable server fails in seconds, named
    name = match["name"]
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(name, match["alias"])
        else:
            version = client.get_model_version(name, match["version"])
    except MlflowException as exc:
        raise ModelSourceError(f"{uri}: no such model version in the registry at {tracking_uri}") from exc
    return RegisteredModel(
        uri=uri,
        name=name,
        version=str(version.version),
        tracking_uri=tracking_uri,
        model_uri=f"models:/{name}/{version.version}",
        onnx_uri=(version.tags or {}).get(TAG_ONNX),
        download_uri=client.get_model_version_download_uri(name, str(version.version)),
    )


def download_student(found: RegisteredModel, destination: str | Path) -> Path:
    """The version's student checkpoint file (the `student` artifact of its MLflow model)."""
    import mlflow.artifacts

    from components.serving.pyfunc import STUDENT_ARTIFACT

    # not `models:/...`: MLflow resolves those with its process-wide registry URI (a ./mlflow.db by default)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=found.download_uri, dst_path=str(destination), tracking_uri=found.tracking_uri
    )
    matches = sorted(Path(local).glob(f"artifacts/{STUDENT_ARTIFACT}*"))
    if not matches:
        raise ModelSourceError(f"{found.uri}: version {found.version} carries no student; not a trs-pose predictor")
    return matches[0]


def download_onnx(found: RegisteredModel, destination: str | Path) -> Path | None:
    """The version's model.onnx, or None for versions registered without one."""
    import mlflow.artifacts

    if not found.onnx_uri:
        return None
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=found.onnx_uri, dst_path=str(destination), tracking_uri=found.tracking_uri
        )
    )


def load_registered(
    uri: str, tracking_uri: str, scratch: str | Path
) -> tuple[nn.Module, ExperimentConfig, Path | None]:
    """(student, config, model.onnx or None) of a registered version, downloaded under `scratch`."""
    from components.engine.checkpoint import load_student

    found = find_registered(uri, tracking_uri)
    network, cfg = load_student(download_student(found, Path(scratch) / "model"))
    return network, cfg, download_onnx(found, Path(scratch) / "onnx")


def onnx_runtime(
    network: nn.Module, cfg: ExperimentConfig, flip_test: bool, onnx_path: Path | None, scratch: str | Path
) -> OnnxRuntime:
    """The predictor of `network` in ONNX Runtime: the registered `onnx_path` when it fits (it is
    exported without flip test), else a fresh export into `scratch`."""
    if onnx_path is None or flip_test:
        from components.serving.onnx_export import ONNX_FILE, ONNX_FLIP_FILE, export_onnx

        onnx_path = export_onnx(network, cfg, Path(scratch) / (ONNX_FLIP_FILE if flip_test else ONNX_FILE), flip_test)
    return OnnxRuntime(onnx_path)


def pin_init(init: str, model_name: str, tracking_uri: str | None) -> str | None:
    """`train.init` as a fixed source: `champion` and `models:/NAME@ALIAS` become the version they name
    now (so the run's lineage says exactly which weights it started from), a checkpoint folder becomes
    its latest file. None for scratch, and for `champion` while the model has none yet."""
    if init == "scratch":
        return None
    if init == "champion" or init.startswith("models:/"):
        uri = f"models:/{model_name}@champion" if init == "champion" else init
        if tracking_uri is None:
            raise ModelSourceError(f"train.init={init}: no MLflow server to find it in")
        try:
            return find_registered(uri, tracking_uri).model_uri
        except ModelSourceError:
            if init == "champion":
                return None
            raise
    from components.engine.checkpoint import latest_checkpoint
    from components.storage.s3 import is_s3_uri

    if Path(init).is_dir() or (is_s3_uri(init) and not init.endswith(".pt")):
        latest = latest_checkpoint(init)
        if latest is None:
            raise ModelSourceError(f"train.init={init}: no checkpoint in this location")
        return latest
    return init


def load_initial_weights(source: str, tracking_uri: str | None, scratch: str | Path) -> InitialWeights:
    """The student weights and config of a pinned source (`pin_init`): a registered version or a checkpoint."""
    from components.config import ExperimentConfig
    from components.engine.checkpoint import load_checkpoint
    from components.engine.warm_start import InitialWeights

    if source.startswith("models:/"):
        if tracking_uri is None:
            raise ModelSourceError(f"train.init={source}: no MLflow server to find it in")
        path: str | Path = download_student(find_registered(source, tracking_uri), Path(scratch) / "init")
    else:
        path = source
    try:
        state = load_checkpoint(path)
    except FileNotFoundError as exc:
        raise ModelSourceError(f"train.init={source}: no such checkpoint") from exc
    if "student" not in state or "config" not in state:
        raise ModelSourceError(f"train.init={source}: not a trs-pose checkpoint (no student and config)")
    return InitialWeights(source, state["student"], ExperimentConfig.model_validate(state["config"]))
