"""Backoff and deadline of components.storage.retry, and which S3 / MLflow errors count as transient."""

from __future__ import annotations

import io

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from components.config import ConfigError, load_config
from components.registry.outages import is_transient_mlflow_error
from components.storage.retry import Patient, StoreUnavailable, with_retries
from components.storage.s3 import is_transient_s3_error


class Clock:
    """Stands for time: `sleep` advances it, so deadlines are tested without waiting."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        monkeypatch.setattr("components.storage.retry.time.monotonic", lambda: self.now)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def test_backoff_doubles_until_the_deadline_then_names_endpoint_and_object(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)

    def unreachable() -> None:
        raise EndpointConnectionError(endpoint_url="http://s3.example:8333")

    with pytest.raises(StoreUnavailable) as failure:
        with_retries(
            unreachable,
            transient=is_transient_s3_error,
            deadline_s=60,
            endpoint="S3 endpoint http://s3.example:8333",
            what="s3://b/run/ckpt-00000040.pt",
            sleep=clock.sleep,
        )
    message = str(failure.value)
    assert "S3 endpoint http://s3.example:8333 unreachable while writing s3://b/run/ckpt-00000040.pt" in message
    assert "\n" not in message
    assert clock.now == pytest.approx(60)
    assert all(later >= earlier for earlier, later in zip(clock.sleeps[:4], clock.sleeps[1:5], strict=True))
    assert clock.sleeps[0] == pytest.approx(0.5, rel=0.25) and max(clock.sleeps) <= 15 * 1.2


def test_a_call_that_recovers_returns_and_other_errors_pass_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    answers: list[Exception | str] = [_client_error(503, "SlowDown"), _client_error(500, "InternalError"), "stored"]

    def flaky() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    kwargs = {"transient": is_transient_s3_error, "deadline_s": 60.0, "endpoint": "e", "what": "w"}
    assert with_retries(flaky, sleep=clock.sleep, **kwargs) == "stored"  # type: ignore[arg-type]
    assert len(clock.sleeps) == 2

    denied = _client_error(403, "AccessDenied")
    with pytest.raises(ClientError):
        with_retries(lambda: (_ for _ in ()).throw(denied), sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]
    assert len(clock.sleeps) == 2, "an access error must not be retried"


def test_a_retried_upload_sends_its_body_from_the_start() -> None:
    """upload_fileobj reads the stream; a retry after a partial read must not send the rest only."""
    received: list[bytes] = []

    class Store:
        calls = 0

        def upload_fileobj(self, body: io.BytesIO, bucket: str, key: str) -> None:
            self.calls += 1
            data = body.read()
            if self.calls == 1:
                raise EndpointConnectionError(endpoint_url="http://x")
            received.append(data)

    client = Patient(Store(), transient=is_transient_s3_error, deadline_s=30, endpoint="e", describe=lambda *a: "w")
    client.upload_fileobj(io.BytesIO(b"whole checkpoint"), "bucket", "key")
    assert received == [b"whole checkpoint"]


def test_listing_retries_each_page_and_names_the_prefix_when_it_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 500 on the second page of a listing is retried (CI met one while SeaweedFS stopped); a store
    that stays down ends the listing with one line naming the endpoint and the prefix."""
    from components.storage.s3 import S3Uri, _describe_call, iter_objects

    class Store:
        def __init__(self, failures: int) -> None:
            self.failures, self.requests = failures, 0

        def list_objects_v2(self, Bucket: str, Prefix: str, ContinuationToken: str = "") -> dict[str, object]:
            self.requests += 1
            if ContinuationToken and self.failures:
                self.failures -= 1
                raise _client_error(500, "InternalError")
            if not ContinuationToken:
                return {"Contents": [{"Key": f"{Prefix}a"}], "IsTruncated": True, "NextContinuationToken": "2"}
            return {"Contents": [{"Key": f"{Prefix}b"}], "IsTruncated": False}

    clock = Clock(monkeypatch)
    monkeypatch.setattr("components.storage.retry.time.sleep", clock.sleep)
    patient = {
        "transient": is_transient_s3_error,
        "endpoint": "S3 endpoint http://s3.example",
        "describe": _describe_call,
    }
    store = Store(failures=2)
    keys = [o["Key"] for o in iter_objects(Patient(store, deadline_s=60, **patient), S3Uri("b", "run/ckpt/"))]
    assert keys == ["run/ckpt/a", "run/ckpt/b"] and store.requests == 4

    with pytest.raises(StoreUnavailable) as failure:
        list(iter_objects(Patient(Store(failures=10**6), deadline_s=60, **patient), S3Uri("b", "run/ckpt/")))
    assert "S3 endpoint http://s3.example unreachable while writing s3://b/run/ckpt/ (list_objects_v2)" in str(
        failure.value
    )


def test_mlflow_errors_transient_or_not() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    down = MlflowException("API request to http://h/api/2.0/mlflow/runs/get failed with exception Max retries exceeded")
    assert is_transient_mlflow_error(down)
    assert is_transient_mlflow_error(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))
    assert is_transient_mlflow_error(MlflowException("API request to endpoint /x failed with error code 503 != 200"))
    assert not is_transient_mlflow_error(MlflowException("no such model", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not is_transient_mlflow_error(MlflowException("bad alias name"))  # INTERNAL_ERROR, the default
    assert not is_transient_mlflow_error(StoreUnavailable("already retried"))


@pytest.mark.parametrize("field", ["storage.retry_deadline_s", "registry.retry_deadline_s", "registry.lease_ttl_s"])
def test_patience_settings_are_validated(field: str) -> None:
    with pytest.raises(ConfigError, match=field.split(".")[1]):
        load_config(None, [f"{field}=0"])
