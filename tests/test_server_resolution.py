"""One resolution of servers and credentials for every command: flags, then config, then environment,
then the local services' state folder (components/services/resolution.py).

The matrix runs every command that talks to a server against each way a user may have set things
up, on the session's real SeaweedFS, MLflow and ZenML servers (a state folder records them as the
local services, so no second set starts). Each cell works, or fails in seconds with one line naming
what is missing; none leaves a ./mlflow.db or ./mlruns behind.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from cli.main import cli
from components.config import load_config
from components.models import build_model
from components.registry.lifecycle import register_student
from components.services.process import find_free_ports
from components.services.resolution import resolve_servers
from components.services.seaweedfs import S3Endpoint
from components.services.zenml_server import ZenMLEndpoint
from tests.service_fixtures import MLflowService, record_local_services, unique_name
from tests.tiny_coco import write_coco

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[1]
FAILS_WITHIN_S = 10.0  # a cell that cannot work says so in this long, at most
# Every variable that may name a server or carry a key, cleared in each cell unless the cell sets it;
# boto3's own files and the instance-metadata lookup are switched off so that nothing else supplies a key.
CLEARED: dict[str, str | None] = {
    **dict.fromkeys(
        (
            "MLFLOW_TRACKING_URI",
            "MLFLOW_REGISTRY_URI",
            "MLFLOW_S3_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_DEFAULT_REGION",
            "ZENML_STORE_URL",
            "ZENML_STORE_API_KEY",
        )
    ),
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass(frozen=True)
class World:
    model: str  # registered, version 1
    tracking_uri: str
    s3: S3Endpoint
    zenml: ZenMLEndpoint
    local: Path  # a state folder recording the session's servers as the local services
    down: Path  # a state folder recording servers that do not run
    empty: Path  # a state folder with no services
    image: Path
    ann: Path
    images: Path
    data_uri: str  # a tiny COCO set in the bucket
    work: Path


@pytest.fixture(scope="module")
def world(mlflow_server: MLflowService, zenml_server: ZenMLEndpoint, tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("resolution")
    model = unique_name("matrix")
    coco = write_coco(root / "coco", num_images=3, seed=2, size=(96, 72))
    ann = root / "coco" / "ann.json"
    ann.write_text(json.dumps(coco))
    cfg = load_config(
        None,
        [
            f"registry.model_name={model}",
            f"registry.experiment={model}",
            "input.image_size=[64, 48]",
            "model.backbone=resnet10t",
            "model.deconv_channels=16",
            "eval.num_workers=0",
            "eval.batch_size=4",
        ],
    )
    torch.manual_seed(0)
    register_student(build_model(cfg), cfg, {"AP": 0.1}, "a" * 64, tracking_uri=mlflow_server.tracking_uri)
    mlflow_server.client().set_registered_model_alias(model, "champion", "1")  # the first cell promotes it again
    s3 = mlflow_server.s3
    prefix = unique_name("matrix-data")
    client = s3.client()
    for split in ("train", "val"):
        client.put_object(
            Bucket=s3.bucket, Key=f"{prefix}/annotations/person_keypoints_{split}.json", Body=ann.read_bytes()
        )
        for path in (root / "coco" / "images").iterdir():
            client.put_object(Bucket=s3.bucket, Key=f"{prefix}/{split}/{path.name}", Body=path.read_bytes())
    dead = [f"http://127.0.0.1:{port}" for port in find_free_ports(3)]
    dead_s3 = S3Endpoint(dead[0], s3.access_key, s3.secret_key, s3.bucket)
    return World(
        model=model,
        tracking_uri=mlflow_server.tracking_uri,
        s3=s3,
        zenml=zenml_server,
        local=record_local_services(root / "local", s3, mlflow_server.tracking_uri, zenml_server),
        down=record_local_services(root / "down", dead_s3, dead[1], ZenMLEndpoint(dead[2], "key")),
        empty=(root / "empty"),
        image=root / "coco" / "images" / "000001.jpg",
        ann=ann,
        images=root / "coco" / "images",
        data_uri=f"s3://{s3.bucket}/{prefix}",
        work=root / "work",
    )


# --- the commands that talk to a server, with and without the flags that name their servers -------

Args = Callable[[World, bool, Path], list[str]]


def _mlflow_flag(world: World, flags: bool) -> list[str]:
    return ["--tracking-uri", world.tracking_uri] if flags else []


def _s3_flag(world: World, flags: bool) -> list[str]:
    return ["--endpoint-url", world.s3.endpoint_url] if flags else []


def _zenml_flag(world: World, flags: bool) -> list[str]:
    return ["--zenml-url", world.zenml.url] if flags else []


COMMANDS: dict[str, Args] = {
    "models list": lambda w, f, out: ["models", "list", "--set", f"registry.model_name={w.model}", *_mlflow_flag(w, f)],
    "models promote": lambda w, f, out: [
        "models", "promote", "1", "--set", f"registry.model_name={w.model}", *_mlflow_flag(w, f), *_s3_flag(w, f),
    ],
    "models rollback": lambda w, f, out: [
        "models", "rollback", "--set", f"registry.model_name={w.model}", *_mlflow_flag(w, f), *_s3_flag(w, f),
    ],
    "predict --model": lambda w, f, out: [
        "predict", "--model", f"models:/{w.model}/1", "--image", str(w.image), "--out-json", str(out / "kp.json"),
        *_mlflow_flag(w, f),
    ],
    "predict --model --runtime onnx": lambda w, f, out: [
        "predict", "--model", f"models:/{w.model}@champion", "--runtime", "onnx", "--image", str(w.image),
        "--out-json", str(out / "kp.json"), *_mlflow_flag(w, f),
    ],
    "evaluate --model": lambda w, f, out: [
        "evaluate", "--model", f"models:/{w.model}/1", "--ann", str(w.ann), "--images", str(w.images), "--json",
        *_mlflow_flag(w, f),
    ],
    "export --model": lambda w, f, out: [
        "export", "--model", f"models:/{w.model}/1", "--out", str(out / "exported"), *_mlflow_flag(w, f),
    ],
    "runs list": lambda w, f, out: ["runs", "list", *_zenml_flag(w, f), *_s3_flag(w, f)],
    "runs show": lambda w, f, out: ["runs", "show", "no-such-run", *_zenml_flag(w, f), *_s3_flag(w, f)],
    "run --resume": lambda w, f, out: [
        "run", "--resume", "no-such-run", *_zenml_flag(w, f), *_mlflow_flag(w, f), *_s3_flag(w, f),
    ],
    "data ingest s3://": lambda w, f, out: [
        "data", "ingest", w.data_uri, "--cache", str(out / "cache"), *_s3_flag(w, f),
    ],
}  # fmt: skip
# A command that works but refuses by its own rule answers with this line: the server was reached.
ANSWERS = {
    "models rollback": "nothing to roll back",
    "runs show": "no pipeline run named 'no-such-run'",
    "run --resume": "no pipeline run named 'no-such-run'",
}


def services_env(world: World, with_credentials: bool) -> dict[str, str | None]:
    """What `eval "$(trs-pose services env [--with-credentials])"` exports, from the real command."""
    args = ["services", "env", *(["--with-credentials"] if with_credentials else [])]
    printed = CliRunner(env={"TRS_POSE_STATE_DIR": str(world.local)}).invoke(cli, args)
    assert printed.exit_code == 0, printed.output
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in printed.stdout.splitlines())
    assert ("AWS_SECRET_ACCESS_KEY" in exported) == with_credentials
    return dict(exported)


# column -> (environment, state folder, flags given)
SETUPS: dict[str, Callable[[World], tuple[dict[str, str | None], Path, bool]]] = {
    "nothing exported": lambda w: ({}, w.local, False),
    "services env": lambda w: (services_env(w, with_credentials=False), w.local, False),
    "services env --with-credentials": lambda w: (services_env(w, with_credentials=True), w.local, False),
    "explicit flags only": lambda w: ({}, w.local, True),
    "flags, no local services": lambda w: ({}, w.empty, True),
    "no servers anywhere": lambda w: ({}, w.empty, False),
    "local services down": lambda w: ({}, w.down, False),
}

NEEDS_KEY = {"models promote", "models rollback", "data ingest s3://"}  # the registry lease, the data
NEEDS_ZENML_KEY = {"runs list", "runs show", "run --resume"}


def expected_failure(setup: str, command: str) -> str | None:
    """The fragment of the one error line a cell must print, or None when the cell must work."""
    if setup == "local services down":
        return "`trs-pose services up`"
    if setup == "no servers anywhere":  # S3 without an endpoint is AWS itself, which needs a key
        return "AWS_ACCESS_KEY_ID" if command == "data ingest s3://" else "`trs-pose services up`"
    if setup == "flags, no local services":
        if command in NEEDS_ZENML_KEY:
            return "ZENML_STORE_API_KEY not set"
        return "AWS_ACCESS_KEY_ID" if command in NEEDS_KEY else None
    return None


def invoke(args: list[str], env: dict[str, str | None], cwd: Path) -> tuple[Result, float]:
    previous = Path.cwd()
    cwd.mkdir(parents=True, exist_ok=True)
    os.chdir(cwd)
    try:
        started = time.monotonic()
        result = CliRunner(env=env).invoke(cli, args)
        return result, time.monotonic() - started
    finally:
        os.chdir(previous)


@pytest.mark.parametrize("setup", list(SETUPS))
def test_every_command_finds_its_servers_or_names_what_is_missing(
    world: World, setup: str, tmp_path: Path, zenml_home: Path
) -> None:
    exported, state, flags = SETUPS[setup](world)
    env = {
        **CLEARED,
        **exported,
        "TRS_POSE_STATE_DIR": str(state),
        "ZENML_CONFIG_PATH": str(zenml_home),
        "TRS_POSE_DEBUG_LOG": str(tmp_path / "debug.log"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    problems = []
    for command, make_args in COMMANDS.items():
        cwd = tmp_path / command.replace(" ", "_").replace("/", "").replace(":", "")
        result, seconds = invoke(make_args(world, flags, cwd), env, cwd)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        left = [name for name in ("mlflow.db", "mlruns") if (cwd / name).exists()]
        wanted = expected_failure(setup, command)
        if left:
            problems.append(f"{command}: left {left} in the working directory")
        if "Traceback" in result.output or not isinstance(result.exception, SystemExit | None):
            problems.append(f"{command}: {result.exception!r}")
        elif wanted is None and command in ANSWERS:
            if not (result.exit_code == 1 and len(errors) == 1 and ANSWERS[command] in errors[0]):
                problems.append(f"{command}: did not get the server's answer: {result.output[-500:]}")
        elif wanted is None and result.exit_code != 0:
            problems.append(f"{command}: exit {result.exit_code}: {result.output[-500:]}")
        elif wanted is not None:
            if result.exit_code == 0 or len(errors) != 1 or wanted not in errors[0] or "internal error" in errors[0]:
                problems.append(f"{command}: wanted one line with {wanted!r}, got exit {result.exit_code}: {errors}")
            elif seconds > FAILS_WITHIN_S:
                problems.append(f"{command}: failed after {seconds:.1f} s")
    assert not problems, "\n".join(problems)


def test_the_registry_lease_gets_the_local_key_after_services_env(world: World, tmp_path: Path) -> None:
    """The README's `eval "$(trs-pose services env)"` exports no key; promotion still takes the registry
    lease in the local store, with the local key (it failed with NoCredentialsError)."""
    env = {**CLEARED, **services_env(world, with_credentials=False), "TRS_POSE_STATE_DIR": str(world.local)}
    result, _ = invoke(["models", "promote", "1", "--set", f"registry.model_name={world.model}"], env, tmp_path)
    assert result.exit_code == 0, result.output
    assert f"{world.model} version 1" in result.output


def test_a_stopped_zenml_server_fails_at_once_without_retry_noise(world: World, tmp_path: Path) -> None:
    """A real process, as a user runs it: `runs list` with the local services down said nothing for
    30 s but urllib3's `Retrying (...)` lines, then an internal error."""
    env = {key: value for key, value in os.environ.items() if key not in CLEARED}
    env.update({key: value for key, value in CLEARED.items() if value is not None})
    env.update({"TRS_POSE_STATE_DIR": str(world.down), "PYTHONPATH": str(REPO_ROOT)})
    env["TRS_POSE_DEBUG_LOG"] = str(tmp_path / "debug.log")
    env["ZENML_CONFIG_PATH"] = str(tmp_path / "zenml")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "runs", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "Retrying" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "the ZenML server at http://127.0.0.1:" in errors[0], done.stderr
    assert "`trs-pose services up`" in errors[0] and str(world.down) in errors[0]
    assert seconds < 30, f"took {seconds:.1f} s (most of it is the interpreter starting)"


# --- the order itself, without servers ------------------------------------------------------------


def test_each_value_comes_from_the_first_source_that_has_it(world: World) -> None:
    cfg = load_config(None, ["registry.tracking_uri=http://config:1", "storage.endpoint_url=http://config:2"])
    environ = {
        "MLFLOW_TRACKING_URI": "http://env:1",
        "AWS_ENDPOINT_URL_S3": "http://env:2",
        "ZENML_STORE_URL": "http://env:3",
        "ZENML_STORE_API_KEY": "env-key",
    }
    flags = resolve_servers(
        cfg,
        tracking_uri="http://flag:1",
        endpoint_url="http://flag:2",
        zenml_url="http://flag:3",
        state_dir=world.local,
        environ=environ,
    )
    assert (flags.mlflow.value, flags.s3.value, flags.zenml.value) == (
        "http://flag:1",
        "http://flag:2",
        "http://flag:3",
    )
    assert flags.mlflow.source == "--tracking-uri"
    config = resolve_servers(cfg, state_dir=world.local, environ=environ)
    assert (config.mlflow.value, config.s3.value, config.zenml.value) == (
        "http://config:1",
        "http://config:2",
        "http://env:3",
    )
    env = resolve_servers(None, state_dir=world.local, environ=environ)
    assert (env.mlflow.value, env.s3.value) == ("http://env:1", "http://env:2")
    local = resolve_servers(None, state_dir=world.local, environ={})
    assert (local.mlflow.value, local.s3.value, local.zenml.value) == (
        world.tracking_uri,
        world.s3.endpoint_url,
        world.zenml.url,
    )
    assert local.s3_key == (world.s3.access_key, world.s3.secret_key) and local.zenml_key == world.zenml.api_key
    assert local.bucket == world.s3.bucket


def test_a_credential_goes_only_with_its_own_server(world: World) -> None:
    """The local services' keys complete the local URLs, and are never sent to another server."""
    elsewhere = resolve_servers(
        None, endpoint_url="http://team-s3:9000", zenml_url="https://team-zenml", state_dir=world.local, environ={}
    )
    assert elsewhere.s3_key is None and elsewhere.zenml_key is None
    with pytest.raises(Exception, match="ZENML_STORE_API_KEY not set: the ZenML server at https://team-zenml"):
        elsewhere.zenml_endpoint()
    exported = resolve_servers(None, state_dir=world.local, environ={"AWS_ENDPOINT_URL_S3": world.s3.endpoint_url})
    assert exported.s3_key == (world.s3.access_key, world.s3.secret_key)  # `services env` named it, no key
    nothing = resolve_servers(None, state_dir=world.empty, environ={})
    assert nothing.mlflow is None and nothing.s3 is None and nothing.zenml is None
    with pytest.raises(Exception, match="no MLflow server: pass --tracking-uri.*trs-pose services up"):
        nothing.tracking_uri()
