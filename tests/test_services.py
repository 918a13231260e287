"""Real SeaweedFS, MLflow and ZenML servers: keys, health, proxied artifacts, and the services manager."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from components.services.process import health_answers

pytestmark = pytest.mark.slow


def test_credentials_come_from_env_or_are_generated_once_owner_only(tmp_path):
    import stat

    from components.services.process import ServiceError
    from components.services.seaweedfs import load_or_create_credentials

    given = load_or_create_credentials(tmp_path, {"TRS_POSE_S3_ACCESS_KEY": "AK", "TRS_POSE_S3_SECRET_KEY": "SK"})
    assert (given.access_key, given.secret_key) == ("AK", "SK") and "SK" not in repr(given)
    assert not (tmp_path / "s3_credentials.json").exists()
    with pytest.raises(ServiceError, match="both"):
        load_or_create_credentials(tmp_path, {"TRS_POSE_S3_ACCESS_KEY": "AK"})
    first = load_or_create_credentials(tmp_path, {})
    assert stat.S_IMODE((tmp_path / "s3_credentials.json").stat().st_mode) == 0o600
    assert load_or_create_credentials(tmp_path, {}) == first and len(first.secret_key) >= 32
    assert load_or_create_credentials(tmp_path / "other", {}) != first


def test_s3_right_key_works_and_wrong_key_is_refused(s3_server):
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="services-test/hello.txt", Body=b"hello")
    assert client.get_object(Bucket=s3_server.bucket, Key="services-test/hello.txt")["Body"].read() == b"hello"

    wrong_secret = s3_server.client(secret_key="not-the-secret")
    with pytest.raises(ClientError) as refused:
        wrong_secret.list_buckets()
    assert refused.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "AccessDenied"}

    unknown_key = s3_server.client(access_key="SOMEONEELSE", secret_key="whatever")
    with pytest.raises(ClientError) as unknown:
        unknown_key.get_object(Bucket=s3_server.bucket, Key="services-test/hello.txt")
    assert unknown.value.response["Error"]["Code"] in {"InvalidAccessKeyId", "AccessDenied"}


def test_aws_env_sets_and_restores_variables(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "outer")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    import os

    from components.storage.s3 import s3_client

    with s3_server.aws_env():
        assert os.environ["AWS_ACCESS_KEY_ID"] == s3_server.access_key
        names = {b["Name"] for b in s3_client().list_buckets()["Buckets"]}
        assert s3_server.bucket in names
    assert os.environ["AWS_ACCESS_KEY_ID"] == "outer"
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ


def test_mlflow_artifacts_are_proxied_into_the_bucket(mlflow_server, tmp_path, monkeypatch):
    import mlflow

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)  # the client must not need S3 credentials
    assert health_answers(mlflow_server.tracking_uri)
    note = tmp_path / "note.txt"
    note.write_text("proxied")
    with mlflow_server.use():
        mlflow.set_experiment("services-proxy-test")
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(note), artifact_path="notes")
    # the run's own prefix: the session's server holds other tests' artifacts, past one listing page
    prefix = f"mlflow/{run.info.experiment_id}/{run.info.run_id}/"
    listing = mlflow_server.s3.client().list_objects_v2(Bucket=mlflow_server.s3.bucket, Prefix=prefix)
    keys = [obj["Key"] for obj in listing.get("Contents", [])]
    assert keys == [f"{prefix}artifacts/notes/note.txt"], keys


def test_up_is_idempotent_status_reports_and_down_stops_only_its_own(tmp_path, s3_server, monkeypatch):
    import os
    import stat
    import subprocess

    from click.testing import CliRunner

    from cli.main import cli
    from components.services.manager import local_services, services_down, services_status, services_up
    from components.services.process import command_line, is_our_process, read_pid
    from components.services.zenml_server import api_key_works, load_or_create_zenml_credentials

    monkeypatch.delenv("TRS_POSE_S3_ACCESS_KEY", raising=False)
    monkeypatch.delenv("TRS_POSE_S3_SECRET_KEY", raising=False)
    state = tmp_path / "state"
    try:
        names = ("seaweedfs", "mlflow", "zenml")
        assert services_up(state, timeout=180) == dict.fromkeys(names, "started")
        first_pids = {name: read_pid(state / f"{name}.pid") for name in names}
        assert services_up(state, timeout=180) == dict.fromkeys(names, "already running")
        assert {name: read_pid(state / f"{name}.pid") for name in first_pids} == first_pids
        again = CliRunner().invoke(cli, ["services", "up", "--state-dir", str(state)], env={"COLUMNS": "200"})
        assert again.exit_code == 0, again.output
        assert all(f"{name}: already running" in again.output for name in names)
        assert again.output.count("running") >= 6  # the status table follows

        assert {row.name: row.state for row in services_status(state)} == dict.fromkeys(names, "running")
        secret_files = {"s3_credentials.json", "s3_identities.json", "zenml_credentials.json"}
        for name in secret_files:
            assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
        services = local_services(state)
        assert services.s3.healthy()
        assert services.zenml is not None and api_key_works(services.zenml.url, services.zenml.api_key)
        admin_password = load_or_create_zenml_credentials(state).admin_password
        secrets = (services.s3.secret_key, services.zenml.api_key, admin_password)
        for path in state.iterdir():
            if path.suffix in {".log", ".json"} and path.name not in secret_files and path.is_file():
                assert not any(s in path.read_text(errors="replace") for s in secrets), f"secret leaked into {path}"
        assert not any(s in repr(services) for s in secrets)
        for pid in first_pids.values():
            assert not any(s in (command_line(pid) or "") for s in secrets), "secrets must not be visible in `ps`"
        exports = CliRunner().invoke(cli, ["services", "env", "--state-dir", str(state)]).output
        assert f"MLFLOW_TRACKING_URI={services.tracking_uri}" in exports
        assert f"ZENML_STORE_URL={services.zenml.url}" in exports
        assert not any(s in exports for s in secrets)
        with_keys = CliRunner().invoke(cli, ["services", "env", "--state-dir", str(state), "--with-credentials"])
        assert services.s3.secret_key in with_keys.output and services.zenml.api_key in with_keys.output
    finally:
        outcome = services_down(state)
    assert outcome == {"zenml": "stopped", "mlflow": "stopped", "seaweedfs": "stopped"}
    assert not is_our_process(first_pids["seaweedfs"], str(state))
    assert {row.state for row in services_status(state)} == {"stopped"}
    shown = CliRunner().invoke(cli, ["services", "status", "--state-dir", str(state)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and shown.output.count("stopped") == 3
    assert s3_server.healthy(), "down must not touch servers it did not start"

    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (state / "mlflow.pid").write_text(f"{bystander.pid}\n")
        assert services_down(state)["mlflow"] == "pid belongs to another process; left alone"
        assert bystander.poll() is None
        assert not (state / "mlflow.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()
    assert os.path.isdir(state / "seaweedfs")
