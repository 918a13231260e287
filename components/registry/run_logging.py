"""What goes into an MLflow run: the config, params and code version (once, when the run opens),
training metrics as they stream, and the validation results and files that explain a model."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from components.config import ExperimentConfig
from components.registry.mlflow_client import MlflowClientLike

TAG_METHOD = "train.method"
TAG_VAL_FINGERPRINT = "eval.val_fingerprint"
CONFIG_ARTIFACT = "config/resolved.yaml"
TAG_CHECKPOINTS = "trs_pose.checkpoint_dir"  # one folder per pipeline run, kept when the run is resumed
TAG_RESUMED_BY = "trs_pose.resumed_by"
_BATCH_LIMIT = 100  # MLflow's log_batch takes at most 100 params (and 100 tags) a call
_SENSITIVE_KEY = re.compile(r"secret|password|passwd|token|credential|access_key|private_key", re.IGNORECASE)
_UNSAFE_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


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
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return info
    info["code.git_commit"] = commit
    info["code.git_dirty"] = str(bool(dirty)).lower()
    return info


def _unfinished_run(client: MlflowClientLike, experiment_id: str, checkpoint_dir: str) -> str | None:
    """The run that trained into `checkpoint_dir` and did not finish (killed, failed): a resumed
    training continues it, so its metrics and the registered model stay in one MLflow run."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_CHECKPOINTS}` = '{checkpoint_dir}'", max_results=10
    )
    unfinished = [run for run in runs if run.info.status != "FINISHED"]
    return unfinished[0].info.run_id if unfinished else None


def open_run(client: MlflowClientLike, cfg: ExperimentConfig, run_name: str) -> str:
    """A new run in `cfg.registry.experiment` holding the resolved config (as params and as YAML), the
    method and the code version. This is the one place a run's configuration is logged. A resumed
    training (same checkpoint folder) reopens the unfinished run instead; its config is logged already."""
    from mlflow.entities import Param

    experiment = client.get_experiment_by_name(cfg.registry.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(cfg.registry.experiment)
    resumed = _unfinished_run(client, experiment_id, cfg.train.checkpoint.dir)
    if resumed is not None:
        client.update_run(resumed, status="RUNNING")
        client.set_tag(resumed, TAG_RESUMED_BY, run_name)
        return resumed
    tags = {TAG_METHOD: cfg.train.method, TAG_CHECKPOINTS: cfg.train.checkpoint.dir, **code_version()}
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    tree = redact(cfg.model_dump(mode="json"))
    params = [Param(key, value) for key, value in flatten_params(tree).items()]
    for start in range(0, len(params), _BATCH_LIMIT):
        client.log_batch(run_id, params=params[start : start + _BATCH_LIMIT])
    client.log_text(run_id, yaml.safe_dump(tree, sort_keys=False), CONFIG_ARTIFACT)
    return run_id


@contextmanager
def mlflow_run(client: MlflowClientLike, cfg: ExperimentConfig, run_name: str) -> Iterator[str]:
    """`open_run` for the block, ended FINISHED when it completes and FAILED when it raises, so a
    failed training can never be registered later (registration refuses failed runs)."""
    run_id = open_run(client, cfg, run_name)
    try:
        yield run_id
    except BaseException:
        with suppress(Exception):  # without retries: the error that ended training must surface now
            getattr(client, "inner", client).set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")


def log_validation(
    client: MlflowClientLike, run_id: str, metrics: Mapping[str, float], val_fingerprint: str, step: int = 0
) -> None:
    """`val.<metric>` at `step`, and the fingerprint of the validation set they were measured on."""
    from mlflow.entities import Metric, RunTag

    timestamp = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(f"val.{key}", float(value), timestamp, step) for key, value in metrics.items()],
        tags=[RunTag(TAG_VAL_FINGERPRINT, val_fingerprint)],
    )


def log_files(client: MlflowClientLike, run_id: str, files: Iterable[tuple[str, str | Path]]) -> None:
    """Each (artifact folder, local file) pair, uploaded under that folder of the run."""
    for folder, path in files:
        client.log_artifact(run_id, str(path), artifact_path=folder)


def metric_key(name: str) -> str:
    """MLflow accepts letters, digits and `_-. /` in keys; anything else becomes `_`."""
    return _UNSAFE_METRIC_CHARS.sub("_", name)


def _as_float(value: Any) -> float | None:
    """Python and numpy numbers and 0-d tensors; None for anything else (strings, lists)."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


class MLflowMetricLogger:
    """A MetricLogger (components/metric_logger.py) for one run: `log_metrics(metrics, step)` -> one
    `log_batch` call; non-finite values are skipped (MLflow's UI cannot chart them), everything else
    is cast to float."""

    def __init__(self, run_id: str, client: MlflowClientLike, prefix: str = "") -> None:
        self.client = client
        self.run_id = run_id
        self.prefix = prefix

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        batch = []
        for name, value in metrics.items():
            number = _as_float(value)
            if number is not None and math.isfinite(number):
                batch.append(Metric(metric_key(self.prefix + name), number, timestamp, int(step)))
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)
