"""Which pipeline runs are alive, which died without saying so, and whether a run may be resumed.

A run's process holds a lease in the bucket (`components.storage.lease`) for as long as it runs,
renewed every third of `storage.run_lease_ttl_s`. The lease is keyed by the run's checkpoint folder,
which a resumed run keeps, so a run and its resumptions share one lease: a resume that cannot take
it finds the run alive and is refused, and two resumes of the same run cannot overlap. A run that
ZenML still calls running but whose lease has expired died silently (SIGKILL, lost pod, power): it
is marked failed in ZenML and MLflow when it is listed, resumed, or when a new run starts.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from components.config import ExperimentConfig
from components.errors import TrsPoseError
from components.registry.changes import SKIPPED_TAG
from components.storage.lease import S3Lease, default_holder
from components.storage.retry import StoreUnavailable
from components.storage.s3 import S3Uri, s3_client

PIPELINE_NAME = "training"
RUN_LEASE_PREFIX = "locks/runs"
RESUME_MARK = "-resume-"
STALE_REASON = "its process died without reporting (no live run lease); marked failed by trs-pose"
TAG_STALE = "trs_pose.stale"


class RunRefused(TrsPoseError, RuntimeError):
    """A run or resume that must not start; the message is the one line the user sees."""


BEFORE_TRAINING = ("ingest_data", "validate_data", "split_data")
DATA_LOCATION = ("data.root", "data.train_split", "data.val_split")  # may change while nothing was trained
DETAIL_LINES = 8  # of a failed step's error message, after its first line


@dataclass(frozen=True)
class StepFailure:
    """How a run failed: `step X failed: Kind: message` and what followed the message's first line
    (a failed validation's violations and report)."""

    line: str
    details: tuple[str, ...] = ()
    step: str | None = None

    @property
    def before_training(self) -> bool:
        return self.step in BEFORE_TRAINING


class RunFailed(TrsPoseError, RuntimeError):
    """A step failed; the message names it and its error. The traceback stays with the step run on
    the ZenML server (`trs-pose runs show RUN`), which has it even when the artifact store is down."""

    def __init__(self, failure: StepFailure, run_name: str) -> None:
        super().__init__(failure.line)
        self.failure = failure
        self.run_name = run_name


@dataclass(frozen=True)
class StepState:
    name: str
    status: str
    seconds: float | None
    error: str  # `Kind: message` of a failed step, else ""
    traceback: str  # as the ZenML server recorded it, else ""


def step_states(run_name: str) -> list[StepState]:
    """The steps of one run in pipeline order, with the error and traceback of each failed one."""
    from zenml.client import Client

    run = Client().get_pipeline_run(run_name, hydrate=True)
    states = []
    for name, step in run.steps.items():
        ended, started = getattr(step, "end_time", None), getattr(step, "start_time", None)
        info = step.exception_info
        kind = (info.source or "").rsplit(".", 1)[-1] if info is not None else ""
        error = f"{kind or 'error'}: {info.message}" if info is not None and info.message else ""
        seconds = (ended - started).total_seconds() if ended and started else None
        states.append(StepState(name, str(step.status), seconds, error, info.traceback if info else ""))
    return states


def first_failure(run_name: str) -> StepFailure:
    """The first failed step of the run and its error, from ZenML's record."""
    for step in step_states(run_name):
        if step.status == "failed":
            if not step.error:
                return StepFailure(f"step {step.name} failed", (), step.name)
            head, *rest = [line.rstrip() for line in step.error.splitlines() if line.strip()]
            return StepFailure(f"step {step.name} failed: {head}", tuple(rest[:DETAIL_LINES]), step.name)
    return StepFailure(f"run {run_name} failed")


@dataclass(frozen=True)
class RunState:
    name: str
    status: str
    started: datetime | None
    steps_done: int
    steps_total: int
    note: str


def run_lease(cfg: ExperimentConfig, run_name: str) -> S3Lease:
    """The lease of the run training into `cfg.train.checkpoint.dir`."""
    key = hashlib.sha256(cfg.train.checkpoint.dir.encode()).hexdigest()[:24]
    uri = S3Uri(cfg.storage.bucket, f"{RUN_LEASE_PREFIX}/{key}.lease")
    client = s3_client(cfg.storage.endpoint_url, cfg.storage.region)
    return S3Lease(client, uri, default_holder(f"pipeline run {run_name}"), cfg.storage.run_lease_ttl_s)


def take_lease(lease: S3Lease, cfg: ExperimentConfig) -> str | None:
    """Try the run's lease once; None when taken, else who holds it."""
    try:
        holder = lease.try_acquire()
    except BotoCoreError as exc:
        raise StoreUnavailable(
            f"S3 endpoint {cfg.storage.endpoint_url or 'AWS'} unreachable while writing the run lease: {exc}"
        ) from exc
    return None if holder is None else holder.describe(time.time())


def lineage_root(run_name: str) -> str:
    """`nightly-resume-2` -> `nightly`: the run a chain of resumptions started from."""
    return re.sub(rf"{re.escape(RESUME_MARK)}\d+$", "", run_name)


def stored_config(run: Any) -> ExperimentConfig | None:
    parameters = run.config.parameters or {}
    return ExperimentConfig.model_validate(parameters["config"]) if "config" in parameters else None


def _in_flight(run: Any) -> bool:
    from zenml.enums import ExecutionStatus

    return not ExecutionStatus(run.status).is_finished


def lease_state(cfg: ExperimentConfig) -> str:
    """ "alive", "dead" (no lease, expired, or held by a process of this host that is gone) or
    "unknown" (the store cannot be reached)."""
    try:
        record = run_lease(cfg, "probe").current()
    except (BotoCoreError, ClientError):
        return "unknown"
    return "alive" if record is not None and record.is_live(time.time()) else "dead"


def _mark_mlflow_runs_failed(cfg: ExperimentConfig) -> None:
    """MLflow runs of the dead run's checkpoint folder still RUNNING: FAILED, tagged why."""
    from components.registry.mlflow_client import registry_client
    from components.registry.outages import limit_mlflow_http_retries
    from components.registry.run_logging import TAG_CHECKPOINTS

    if not cfg.registry.tracking_uri:
        return
    limit_mlflow_http_retries()
    client = registry_client(cfg.registry.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.registry.experiment)
    if experiment is None:
        return
    dir_filter = f"tags.`{TAG_CHECKPOINTS}` = '{cfg.train.checkpoint.dir}' and attributes.status = 'RUNNING'"
    for run in client.search_runs([experiment.experiment_id], filter_string=dir_filter):
        client.set_tag(run.info.run_id, TAG_STALE, STALE_REASON)
        client.set_terminated(run.info.run_id, status="FAILED")


def mark_failed(run: Any, cfg: ExperimentConfig | None, reason: str = STALE_REASON) -> None:
    """The ZenML run and its unfinished steps become failed; its MLflow runs too when reachable."""
    from zenml.client import Client
    from zenml.enums import ExecutionStatus
    from zenml.models import PipelineRunUpdate, StepRunUpdate

    store = Client().zen_store
    for step in run.steps.values():
        if not ExecutionStatus(step.status).is_finished:
            store.update_run_step(step.id, StepRunUpdate(status=ExecutionStatus.FAILED))
    store.update_run(run.id, PipelineRunUpdate(status=ExecutionStatus.FAILED, status_reason=reason))
    if cfg is not None:
        with suppress(Exception):  # an unreachable MLflow is marked on a later listing
            _mark_mlflow_runs_failed(cfg)


def mark_stale_runs() -> list[str]:
    """Mark every in-flight run whose lease is gone failed; returns their names."""
    from zenml.client import Client

    marked = []
    for run in Client().list_pipeline_runs(pipeline=PIPELINE_NAME, size=100, sort_by="desc:created", hydrate=True):
        if not _in_flight(run):
            continue
        cfg = stored_config(run)
        if cfg is not None and lease_state(cfg) == "dead":
            mark_failed(run, cfg)
            marked.append(run.name)
    return marked


def list_runs(limit: int = 50) -> list[RunState]:
    """The training pipeline's runs, newest first, after marking the silently dead ones failed."""
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    marked = set(mark_stale_runs())
    states = []
    for run in Client().list_pipeline_runs(pipeline=PIPELINE_NAME, size=limit, sort_by="desc:created", hydrate=True):
        steps = list(run.steps.values())
        done = sum(ExecutionStatus(step.status).is_successful for step in steps)
        note = "process died; `trs-pose run --resume` continues it" if run.name in marked else ""
        reason = run.get_body().status_reason
        if not note and str(run.status) == "failed" and reason:
            note = str(reason).splitlines()[0][:100]
        started = run.start_time if getattr(run, "start_time", None) else run.created
        status = str(run.status)
        if status == "completed" and SKIPPED_TAG in {tag.name for tag in run.tags}:
            status, note = "skipped", note or "nothing new: see its inputs step"
        states.append(RunState(run.name, status, started, done, len(steps), note))
    return states


def refuse_existing_name(run_name: str) -> None:
    """A new run may not take the name of an existing one; the refusal says what became of it."""
    from zenml.client import Client

    try:
        existing = Client().get_pipeline_run(run_name, allow_name_prefix_match=False, hydrate=False)
    except KeyError:
        return
    attempts: list[Any] = []
    with suppress(KeyError):  # a resumption whose first attempt is gone has no family to ask
        attempts = family(run_name)
    completed_by = [run.name for run in attempts if run.name != run_name and str(run.status) == "completed"]
    if str(existing.status) != "completed" and completed_by:
        raise RunRefused(
            f"a pipeline run named {run_name!r} already exists: it {existing.status} and its resumption "
            f"{completed_by[-1]!r} completed it; choose another --run-name"
        )
    advice = (
        "choose another --run-name"
        if str(existing.status) == "completed"
        else f"continue it with `trs-pose run --resume {run_name}` or choose another --run-name"
    )
    raise RunRefused(f"a pipeline run named {run_name!r} already exists ({existing.status}); {advice}")


_ABSENT = object()


def _differing(old: Any, new: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted field, run's value, given value) for every field that differs; a section on one side and
    null on the other is one difference, named by the section."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from _differing(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{path}.{key}" if path else key)
    elif old != new:
        yield path, old, new


def _shown(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def config_differences(stored: ExperimentConfig, given: ExperimentConfig) -> dict[str, str]:
    """`section.field` -> `run X, given Y` (values as JSON) for exactly the fields that differ."""
    return {
        path: f"run {_shown(old)}, given {_shown(new)}"
        for path, old, new in _differing(stored.model_dump(mode="json"), given.model_dump(mode="json"))
    }


def family(run_name: str) -> list[Any]:
    """The run and its resumptions, oldest first."""
    from zenml.client import Client

    root = lineage_root(run_name)
    client = Client()
    runs = [client.get_pipeline_run(root, allow_name_prefix_match=False, hydrate=True)]
    resumed = client.list_pipeline_runs(name=f"startswith:{root}{RESUME_MARK}", size=100, hydrate=True)
    runs += sorted((r for r in resumed if lineage_root(r.name) == root), key=lambda r: r.created)
    return runs


def _training_finished_again(run: Any, cfg: ExperimentConfig) -> None:
    """When the train step completed, its MLflow run is FINISHED again (a registration that died
    had reopened it, and the stale marking failed it), so the resumed registration accepts it."""
    from zenml.enums import ExecutionStatus

    from components.registry.outages import patient_registry_client

    step = run.steps.get("train_model")
    if step is None or not ExecutionStatus(step.status).is_successful or not cfg.registry.tracking_uri:
        return
    training = step.outputs["training"][0].load()
    client = patient_registry_client(cfg.registry.tracking_uri, cfg.registry.retry_deadline_s)
    if client.get_run(training.mlflow_run_id).info.status != "FINISHED":
        client.set_terminated(training.mlflow_run_id, status="FINISHED")


@dataclass
class Resumption:
    latest: Any  # the attempt to replay: its successful steps are reused
    config: ExperimentConfig
    run_name: str  # the new attempt's name
    lease: S3Lease  # held: released by the caller when the attempt ends
    from_start: bool = False  # nothing was trained and the data location changed: run every step again


def trained(attempts: list[Any]) -> bool:
    """Whether any attempt of the run started training (so its checkpoints belong to its data); a step
    that never ran, skipped after an earlier one failed, does not count."""
    for attempt in attempts:
        step = attempt.steps.get("train_model")
        if step is not None and getattr(step, "start_time", None) is not None:
            return True
    return False


def check_resume_config(run_name: str, stored: ExperimentConfig, given: ExperimentConfig, attempts: list[Any]) -> bool:
    """Refuse a `given` config that differs from the run's; True when only the data location differs and
    nothing was trained, so the run starts again from ingest on the corrected data."""
    checkpoint = given.train.checkpoint.model_copy(update={"dir": stored.train.checkpoint.dir})
    pinned = given.model_copy(update={"train": given.train.model_copy(update={"checkpoint": checkpoint})})
    differences = config_differences(stored, pinned)
    if not differences:
        return False
    shown = "; ".join(f"{key}: {text}" for key, text in list(differences.items())[:5])
    shown += f"; and {len(differences) - 5} more" if len(differences) > 5 else ""
    if set(differences) <= set(DATA_LOCATION):
        if not trained(attempts):
            return True
        raise RunRefused(
            f"run {run_name!r} trained on its data already; its data location cannot change ({shown}). "
            "Start a new run with the corrected data; nothing resumed"
        )
    allowed = "" if trained(attempts) else f" (only {', '.join(DATA_LOCATION)} may change before training)"
    raise RunRefused(f"run {run_name!r} was started with another config ({shown}){allowed}; nothing resumed")


def prepare_resume(run_name: str, given: ExperimentConfig | None) -> Resumption:
    """Refuse (RunRefused, one line) or return what the replay needs, holding the run's lease."""
    from zenml.client import Client

    try:
        Client().get_pipeline_run(run_name, allow_name_prefix_match=False, hydrate=False)
        attempts = family(run_name)
    except KeyError:
        raise RunRefused(f"no pipeline run named {run_name!r}; `trs-pose runs list` shows the runs") from None
    finished = [run.name for run in attempts if str(run.status) == "completed"]
    if finished:
        raise RunRefused(f"run {run_name!r} completed (as {finished[-1]!r}); there is nothing to resume")
    latest = attempts[-1]
    stored = stored_config(latest)
    if stored is None:
        raise RunRefused(f"run {run_name!r} has no stored config; it was not started by trs-pose")
    from_start = given is not None and check_resume_config(run_name, stored, given, attempts)
    config = stored
    if from_start:
        assert given is not None
        config = stored.model_copy(update={"data": given.data})
    lease = run_lease(stored, f"{lineage_root(run_name)} (resuming)")
    holder = take_lease(lease, stored)
    if holder is not None:
        raise RunRefused(f"run {run_name!r} is still alive: its lease is held by {holder}")
    for attempt in attempts:
        if _in_flight(attempt):
            mark_failed(attempt, stored)
    _training_finished_again(latest, stored)
    number = len(attempts)
    new_name = f"{lineage_root(run_name)}{RESUME_MARK}{number}"
    return Resumption(latest, config, new_name, lease, from_start)
