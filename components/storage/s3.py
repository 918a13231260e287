"""A thin, typed layer over boto3 for S3-compatible stores (AWS, SeaweedFS, MinIO, Ceph).

Credentials and the endpoint come from the standard AWS variables (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3`, `AWS_DEFAULT_REGION`) unless
an endpoint is passed explicitly; nothing here ever logs a secret.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from components.atomic_files import replaced_atomically
from components.services.reachability import CONNECT_TIMEOUT_S
from components.storage.retry import Patient

S3_SCHEME = "s3://"


def is_s3_uri(location: str | os.PathLike[str]) -> bool:
    return str(location).startswith(S3_SCHEME)


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        if not is_s3_uri(uri):
            raise ValueError(f"{uri!r} is not an s3:// URI")
        bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
        if not bucket:
            raise ValueError(f"{uri!r} names no bucket")
        return cls(bucket=bucket, key=key)

    def join(self, *parts: str) -> S3Uri:
        key = "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/"))
        return S3Uri(self.bucket, key)

    def __str__(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key}" if self.key else f"{S3_SCHEME}{self.bucket}"


def s3_client(endpoint_url: str | None = None, region: str | None = None, max_attempts: int = 5) -> Any:
    """A boto3 S3 client; path-style addressing so loopback and in-cluster endpoints work."""
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=BotoConfig(
            s3={"addressing_style": "path"},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=CONNECT_TIMEOUT_S,  # an unreachable endpoint fails in seconds, not minutes
            read_timeout=60,
        ),
    )


_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "503", "500"}


def is_transient_s3_error(exc: BaseException) -> bool:
    """Connection trouble, timeouts and 5xx answers: worth retrying. Access or missing-key errors: not."""
    import builtins

    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ConnectionError | HTTPClientError | builtins.ConnectionError | TimeoutError):
        return True
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return status >= 500 or exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    if isinstance(exc, S3UploadFailedError):  # the transfer manager wraps the error it met
        cause = exc.__cause__ or exc.__context__
        return cause is None or is_transient_s3_error(cause)
    return False


def _describe_call(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """`put_object s3://bucket/key` from boto3's keyword or transfer-style positional arguments."""
    bucket, key = kwargs.get("Bucket"), kwargs.get("Key", kwargs.get("Prefix"))
    if bucket is None and method in {"upload_file", "upload_fileobj"} and len(args) >= 3:
        bucket, key = args[1], args[2]
    elif bucket is None and method in {"download_file", "download_fileobj"} and len(args) >= 2:
        bucket, key = args[0], args[1]
    return f"{S3Uri(str(bucket), str(key or ''))} ({method})" if bucket else method


def patient_s3_client(endpoint_url: str | None, region: str | None, deadline_s: float) -> Any:
    """`s3_client` whose calls retry transient failures for up to `deadline_s` (see storage.retry)."""
    client = s3_client(endpoint_url, region, max_attempts=2)  # the backoff is ours, bounded by the deadline
    return Patient(
        client,
        transient=is_transient_s3_error,
        deadline_s=deadline_s,
        endpoint=f"S3 endpoint {client.meta.endpoint_url}",
        describe=_describe_call,
    )


def ensure_bucket(client: Any, bucket: str) -> None:
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


def iter_objects(client: Any, uri: S3Uri) -> Iterator[dict[str, Any]]:
    """Every object under the URI's prefix, with Key, Size and ETag.

    One `list_objects_v2` call a page rather than boto3's paginator, so that a patient client
    retries each page request (a paginator's requests would bypass it)."""
    request: dict[str, Any] = {"Bucket": uri.bucket, "Prefix": uri.key}
    while True:
        page = client.list_objects_v2(**request)
        yield from page.get("Contents", [])
        if not page.get("IsTruncated"):
            return
        request["ContinuationToken"] = page["NextContinuationToken"]


def upload_file(client: Any, local: str | Path, uri: S3Uri) -> None:
    client.upload_file(str(local), uri.bucket, uri.key)


def download_file(client: Any, uri: S3Uri, local: str | Path) -> Path:
    """Download to a temporary name unique to this call, then rename, so a half-written file is never seen."""
    target = Path(local)
    with replaced_atomically(target) as partial:
        client.download_file(uri.bucket, uri.key, str(partial))
    return target


def put_bytes(client: Any, uri: S3Uri, data: bytes) -> None:
    client.put_object(Bucket=uri.bucket, Key=uri.key, Body=data)


def get_bytes(client: Any, uri: S3Uri) -> bytes:
    return client.get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()


def object_exists(client: Any, uri: S3Uri) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=uri.bucket, Key=uri.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True
