"""Which ZenML server a run records into: the environment's, the local services', or none (the
retraining CronJob names it by a Secret, or does not run at all)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import cli
from components.config import load_config
from components.kubernetes.manifests import CONFIG_ANNOTATION, CONFIG_PATH, render_cronjob


def cronjob_pod() -> dict[str, Any]:
    cfg = load_config(None, ["backend.kubernetes.zenml_secret=team-zenml"])
    return render_cronjob(cfg)["spec"]["jobTemplate"]["spec"]["template"]


def cronjob_container() -> dict[str, Any]:
    return cronjob_pod()["spec"]["containers"][0]


def test_cronjob_reads_the_zenml_server_and_key_from_a_required_secret() -> None:
    container = cronjob_container()
    refs = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    for key in ("ZENML_STORE_URL", "ZENML_STORE_API_KEY"):
        assert refs[key] == {"name": "team-zenml", "key": key, "optional": False}
    assert not any(item["name"].startswith("ZENML_STORE") and "value" in item for item in container["env"])
    assert "--no-local-services" in container["command"]


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({}, "ZENML_STORE_URL and ZENML_STORE_API_KEY"),
        ({"ZENML_STORE_URL": "listening"}, "ZENML_STORE_API_KEY"),
    ],
)
def test_the_pipeline_pod_refuses_to_run_without_the_zenml_secret(
    present: dict[str, str], missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CronJob's own command, with the Secret's keys absent: one line naming them, nothing run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRS_POSE_STATE_DIR", str(tmp_path / "no-services"))
    for name in ("ZENML_STORE_URL", "ZENML_STORE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    server = socket.create_server(("127.0.0.1", 0))  # a URL that answers, so only the key is missing
    for name, value in present.items():
        monkeypatch.setenv(name, f"http://127.0.0.1:{server.getsockname()[1]}" if value == "listening" else value)
    pod = cronjob_pod()
    config_file = tmp_path / "config.yaml"  # what the downwardAPI volume mounts
    config_file.write_text(pod["metadata"]["annotations"][CONFIG_ANNOTATION])
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["trs-pose", "run"]
    args = [arg if arg != CONFIG_PATH else str(config_file) for arg in command[1:]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"Error: {missing} not set"), result.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / ".state").exists()
    server.close()


def test_which_zenml_server_a_run_records_into(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment's server wins; else `services up`'s, whose key also completes its bare URL."""
    from components.services.process import ServiceError
    from components.services.zenml_server import ZenMLEndpoint
    from pipelines.zenml_stack import zenml_endpoint

    state = tmp_path / "services"
    state.mkdir()
    endpoints = {
        "seaweedfs": {"endpoint_url": "http://127.0.0.1:1", "bucket": "b"},
        "zenml": {"url": "http://127.0.0.1:2"},
    }
    (state / "endpoints.json").write_text(json.dumps(endpoints))
    credentials = {"admin_user": "admin", "admin_password": "p", "jwt_secret": "j", "api_key": "local-key"}
    (state / "zenml_credentials.json").write_text(json.dumps(credentials))
    monkeypatch.setenv("TRS_POSE_STATE_DIR", str(state))
    for name in ("ZENML_STORE_URL", "ZENML_STORE_API_KEY"):
        monkeypatch.delenv(name, raising=False)

    assert zenml_endpoint().api_key == "local-key"
    with pytest.raises(ServiceError, match="^ZENML_STORE_URL and ZENML_STORE_API_KEY not set"):
        zenml_endpoint(allow_local=False)
    monkeypatch.setenv("ZENML_STORE_URL", "http://127.0.0.1:2")
    assert zenml_endpoint() == ZenMLEndpoint("http://127.0.0.1:2", "local-key")
    monkeypatch.setenv("ZENML_STORE_URL", "https://team.example")
    with pytest.raises(ServiceError, match="^ZENML_STORE_API_KEY not set"):
        zenml_endpoint()
    monkeypatch.setenv("ZENML_STORE_API_KEY", "team-key")
    assert (zenml_endpoint().url, zenml_endpoint().api_key) == ("https://team.example", "team-key")
