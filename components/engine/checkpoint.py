"""Training checkpoints on a local directory or `s3://`, written so a crash never leaves a torn one.

Local: the state is written to a temporary file in the same directory and `os.replace`d into
`ckpt-<step>.pt`, then a `latest` pointer file is replaced the same way. S3: the object is uploaded
first and only then is the `latest` pointer object overwritten, so a reader following `latest`
always finds a complete checkpoint. Checkpoints hold only tensors and plain Python values, so they
load with `torch.load(weights_only=True)` and a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch

from components.atomic_files import write_atomically
from components.config import ExperimentConfig
from components.errors import TrsPoseError
from components.storage.s3 import S3Uri, get_bytes, is_s3_uri, iter_objects, object_exists, put_bytes, s3_client

LATEST = "latest"
CHECKPOINT_NAME = re.compile(r"^ckpt-(\d{8,})\.pt$")


class ResumeError(TrsPoseError, ValueError):
    """train.checkpoint.dir holds checkpoints this run cannot resume from (or must not mix with)."""


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:08d}.pt"


def _serialise(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save_checkpoint(state: dict[str, Any], location: str | Path, step: int, client: Any = None) -> str:
    """Write `state` as the checkpoint of `step` under `location` and point `latest` at it; returns its URI."""
    data = _serialise(state)
    name = checkpoint_name(step)
    if is_s3_uri(location):
        client = client or s3_client()
        root = S3Uri.parse(str(location))
        target = root.join(name)
        client.upload_fileobj(io.BytesIO(data), target.bucket, target.key)  # multipart when large
        put_bytes(client, root.join(LATEST), name.encode())
        return str(target)
    root_dir = Path(location)
    write_atomically(root_dir / name, data)
    write_atomically(root_dir / LATEST, name.encode())
    return str(root_dir / name)


def list_checkpoints(location: str | Path, client: Any = None) -> list[tuple[int, str]]:
    """(step, uri) of every checkpoint under `location`, oldest first."""
    found: list[tuple[int, str]] = []
    if is_s3_uri(location):
        client = client or s3_client()
        root = S3Uri.parse(str(location))
        prefix = root.key.rstrip("/") + "/" if root.key else ""
        for obj in iter_objects(client, S3Uri(root.bucket, prefix)):
            relative = obj["Key"][len(prefix) :]
            match = CHECKPOINT_NAME.match(relative)
            if match:
                found.append((int(match.group(1)), str(S3Uri(root.bucket, obj["Key"]))))
    elif Path(location).is_dir():
        for path in Path(location).iterdir():
            match = CHECKPOINT_NAME.match(path.name)
            if match:
                found.append((int(match.group(1)), str(path)))
    return sorted(found)


def latest_checkpoint(location: str | Path, client: Any = None) -> str | None:
    """The checkpoint `latest` points to; the newest complete one if the pointer is missing; else None."""
    if is_s3_uri(location):
        client = client or s3_client()
        root = S3Uri.parse(str(location))
        if object_exists(client, root.join(LATEST)):
            return str(root.join(get_bytes(client, root.join(LATEST)).decode().strip()))
    else:
        pointer = Path(location) / LATEST
        if pointer.is_file():
            target = Path(location) / pointer.read_text().strip()
            if target.is_file():
                return str(target)
    checkpoints = list_checkpoints(location, client)
    return checkpoints[-1][1] if checkpoints else None


def prune_checkpoints(location: str | Path, keep_last: int, client: Any = None) -> list[str]:
    """Delete all but the newest `keep_last` checkpoints; returns the URIs removed."""
    checkpoints = list_checkpoints(location, client)
    doomed = [uri for _, uri in checkpoints[: max(0, len(checkpoints) - keep_last)]]
    for uri in doomed:
        if is_s3_uri(uri):
            target = S3Uri.parse(uri)
            (client or s3_client()).delete_object(Bucket=target.bucket, Key=target.key)
        else:
            Path(uri).unlink(missing_ok=True)
    return doomed


def load_checkpoint(uri: str | Path, client: Any = None) -> dict[str, Any]:
    """The state dict saved by `save_checkpoint`, with every tensor on the CPU."""
    if is_s3_uri(uri):
        data = get_bytes(client or s3_client(), S3Uri.parse(str(uri)))
        source: Any = io.BytesIO(data)
    else:
        if not Path(uri).is_file():
            raise FileNotFoundError(f"{uri}: no such checkpoint")
        source = str(uri)
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{uri}: not a readable trs-pose checkpoint ({exc})") from exc


def load_student(uri: str | Path, client: Any = None) -> tuple[torch.nn.Module, ExperimentConfig]:
    """The trained student of a checkpoint, in eval mode on the CPU, with the config it was trained by."""
    from components.models import build_model

    state = load_checkpoint(uri, client)
    missing = {"config", "student"} - set(state)
    if missing:
        raise ValueError(f"{uri}: checkpoint lacks {sorted(missing)}")
    cfg = ExperimentConfig.model_validate(state["config"])
    model = build_model(cfg)
    model.load_state_dict(state["student"])
    return model.eval(), cfg
