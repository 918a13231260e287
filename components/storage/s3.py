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


def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client; path-style addressing so loopback and in-cluster endpoints work."""
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
    )


def ensure_bucket(client: Any, bucket: str) -> None:
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


def iter_objects(client: Any, uri: S3Uri) -> Iterator[dict[str, Any]]:
    """Every object under the URI's prefix, with Key, Size and ETag."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=uri.bucket, Prefix=uri.key):
        yield from page.get("Contents", [])


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


def delete_prefix(client: Any, uri: S3Uri) -> int:
    keys = [{"Key": obj["Key"]} for obj in iter_objects(client, uri)]
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=uri.bucket, Delete={"Objects": keys[start : start + 1000]})
    return len(keys)
