"""The hand-off between a training pod and the launcher that submitted it: `result.json` on S3.

The pod (`trs-pose train` with `TRS_POSE_RUN_URI` set) writes it after its last checkpoint; the
launcher reads it once the Job completes. Keeping the contract in one small module means both sides
agree on the key and the fields without importing each other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from components.kubernetes.manifests import RUN_URI_ENV
from components.storage.s3 import S3Uri, get_bytes, put_bytes, s3_client

RESULT_NAME = "result.json"


@dataclass(frozen=True)
class RunResult:
    checkpoint_uri: str
    step: int
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: bytes | str, source: str) -> RunResult:
        try:
            tree = json.loads(raw)
            return cls(
                str(tree["checkpoint_uri"]),
                int(tree["step"]),
                {k: float(v) for k, v in tree.get("metrics", {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{source}: not a run result (needs checkpoint_uri, step, metrics): {exc}") from exc


def result_uri(run_uri: str) -> str:
    return str(S3Uri.parse(run_uri).join(RESULT_NAME))


def write_run_result(run_uri: str, result: RunResult, client: Any | None = None) -> str:
    """Called in the pod at the end of training; returns where the result went."""
    target = result_uri(run_uri)
    put_bytes(client or s3_client(), S3Uri.parse(target), json.dumps(asdict(result), sort_keys=True).encode())
    return target


def publish_if_in_pod(
    checkpoint_uri: str, step: int, metrics: dict[str, float], client: Any | None = None
) -> str | None:
    """No-op outside a pod-backend run, so `trs-pose train` can always call it. The pod passes a patient
    client (`patient_s3_client`): hours of training must not be lost to a store that blinks at the end."""
    run_uri = os.environ.get(RUN_URI_ENV)
    if not run_uri:
        return None
    return write_run_result(run_uri, RunResult(checkpoint_uri, step, dict(metrics)), client)


def read_run_result(run_uri: str, client: Any | None = None) -> RunResult:
    target = result_uri(run_uri)
    return RunResult.from_json(get_bytes(client or s3_client(), S3Uri.parse(target)), target)


ResultReader = Callable[[str], RunResult]
