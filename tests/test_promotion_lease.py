"""The registry lease on the real SeaweedFS: conditional puts are atomic, expired leases are taken over
once, and concurrent promotions (one process each) leave the best champion and a complete history."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from components.storage.lease import LeaseLost, LeaseTimeout, S3Lease
from components.storage.s3 import S3Uri
from tests.service_fixtures import unique_name

REPO_ROOT = Path(__file__).resolve().parents[1]
VAL = "f" * 64


def _code(call) -> str:  # type: ignore[no-untyped-def]
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def test_seaweedfs_honours_if_none_match_and_if_match(s3_server) -> None:
    client, bucket, key = s3_server.client(), s3_server.bucket, unique_name("conditional")
    assert _code(lambda: client.put_object(Bucket=bucket, Key=key, Body=b"1", IfNoneMatch="*")) == "ok"
    assert _code(lambda: client.put_object(Bucket=bucket, Key=key, Body=b"2", IfNoneMatch="*")) == "PreconditionFailed"
    etag = client.head_object(Bucket=bucket, Key=key)["ETag"]
    assert _code(lambda: client.put_object(Bucket=bucket, Key=key, Body=b"3", IfMatch=etag)) == "ok"
    assert _code(lambda: client.put_object(Bucket=bucket, Key=key, Body=b"4", IfMatch=etag)) == "PreconditionFailed"
    assert _code(lambda: client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)) == "PreconditionFailed"
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"3"


def test_lease_excludes_expires_and_is_taken_over_once(s3_server) -> None:
    client = s3_server.client()
    uri = S3Uri(s3_server.bucket, f"{unique_name('lease')}/x.lease")
    first = S3Lease(client, uri, "first holder", ttl_s=1.5)
    first.acquire(timeout_s=1)
    with pytest.raises(LeaseTimeout, match="held by first holder"):
        S3Lease(client, uri, "second", ttl_s=1.5).acquire(timeout_s=0.5)

    time.sleep(1.6)  # the first holder "crashed": no renewal, so its lease expires
    contenders = [S3Lease(s3_server.client(), uri, f"contender {i}", ttl_s=30) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda lease: lease.try_acquire(), contenders))
    winners = [lease for lease, holder in zip(contenders, outcomes, strict=True) if holder is None]
    assert len(winners) == 1, [None if o is None else o.holder for o in outcomes]
    assert all(o is None or o.holder == winners[0].holder for o in outcomes)

    with pytest.raises(LeaseLost):
        first.renew()
    first.release()  # no longer ours: the winner's lease must survive it
    current = S3Lease(client, uri, "reader", ttl_s=1).current()
    assert current is not None and current.holder == winners[0].holder
    winners[0].release()
    assert S3Lease(client, uri, "reader", ttl_s=1).current() is None


HOLD_LEASE = """
import sys, time
from components.storage.lease import S3Lease
from components.storage.s3 import S3Uri, s3_client
lease = S3Lease(s3_client(sys.argv[1]), S3Uri(sys.argv[2], sys.argv[3]), "a run killed with -9", ttl_s=60)
assert lease.try_acquire() is None
print("held", flush=True)
time.sleep(120)
"""


def test_a_lease_whose_holder_on_this_host_is_gone_is_taken_at_once(s3_server) -> None:
    """`kill -9` of a run: its lease (TTL 60 s) blocked `--resume` until it expired. A holder on this host
    whose process is gone is dead now; one that runs, or runs elsewhere, is waited out as before."""
    client = s3_server.client()
    uri = S3Uri(s3_server.bucket, f"{unique_name('killed')}/run.lease")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LEASE, s3_server.endpoint_url, uri.bucket, uri.key],
        env={**os.environ, **s3_server.environment(), "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        alive = S3Lease(client, uri, "resume", ttl_s=60).try_acquire()
        assert alive is not None and alive.pid == holder.pid, "a live holder keeps its lease"
        holder.kill()  # SIGKILL: no release
        os.waitid(os.P_PID, holder.pid, os.WEXITED | os.WNOWAIT)  # dead, and left a zombie: not reaped yet
        started = time.monotonic()
        resumed = S3Lease(client, uri, "resume", ttl_s=60)
        assert resumed.try_acquire() is None and time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    resumed.release()

    elsewhere = {"holder": "a run on another machine", "token": "t", "acquired_at": time.time(), "host": "elsewhere"}
    elsewhere.update({"expires_at": time.time() + 60, "pid": holder.pid})  # that pid means nothing here
    client.put_object(Bucket=uri.bucket, Key=uri.key, Body=json.dumps(elsewhere).encode())
    waiting = S3Lease(client, uri, "resume", ttl_s=60).try_acquire()
    assert waiting is not None and waiting.holder == "a run on another machine"


def _versions(client, name: str, aps: list[float]) -> list[str]:  # type: ignore[no-untyped-def]
    """Versions carrying what `promote` reads (AP, validation set, a complete registration)."""
    from components.registry.lifecycle import TAG_AP, TAG_REGISTRATION, TAG_VAL_FINGERPRINT

    client.create_registered_model(name)
    return [
        str(
            client.create_model_version(
                name,
                source=f"s3://trs-pose/{name}/{index}",
                tags={TAG_AP: repr(ap), TAG_VAL_FINGERPRINT: VAL, TAG_REGISTRATION: "complete"},
            ).version
        )
        for index, ap in enumerate(aps)
    ]


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_eight_concurrent_promotions_leave_the_best_champion_and_a_whole_history(mlflow_server) -> None:
    from components.registry.lifecycle import CHAMPION, MODEL_TAG_HISTORY, TAG_AP, TAG_DECISION, promote

    client, name = mlflow_server.client(), unique_name("race")
    # a worst champion before the race, so that the best contender replaces someone whichever wins the lease first
    aps = [0.05, *random.Random(15).sample([0.145, 0.21, 0.33, 0.38, 0.47, 0.52, 0.61, 0.656], 8)]
    versions = _versions(client, name, aps)
    assert promote(client, name, versions[0], margin=0.0).promoted
    common = ["--set", f"registry.model_name={name}", "--tracking-uri", mlflow_server.tracking_uri]
    processes = [
        _cli("models", "promote", version, *common, env=mlflow_server.s3.environment()) for version in versions[1:]
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert all(process.returncode in (0, 1) for process in processes), outputs

    champion = client.get_model_version_by_alias(name, CHAMPION)
    assert float(champion.tags[TAG_AP]) == max(aps)
    history = json.loads(client.get_registered_model(name).tags[MODEL_TAG_HISTORY])
    promoted = [v for v in versions if client.get_model_version(name, v).tags.get(TAG_DECISION) == "promoted"]
    assert sorted(history) == sorted(v for v in promoted if v != champion.version)  # each replaced champion once
    assert len(set(history)) == len(history)
    history_aps = [aps[versions.index(v)] for v in history]
    assert history_aps == sorted(history_aps), "every promotion replaced a worse champion"


def test_promotion_that_cannot_get_the_lease_names_the_holder(mlflow_server) -> None:
    from components.registry.promotion_lease import LEASE_PREFIX

    client, name = mlflow_server.client(), unique_name("held")
    versions = _versions(client, name, [0.4])
    uri = S3Uri(mlflow_server.s3.bucket, f"{LEASE_PREFIX}/{name}.lease")
    holder = S3Lease(mlflow_server.s3.client(), uri, "nightly retraining on host-a pid 42", ttl_s=60)
    with holder.held(timeout_s=5):
        common = ["--set", f"registry.model_name={name}", "--set", "registry.lease_timeout_s=1"]
        process = _cli(
            "models",
            "promote",
            versions[0],
            *common,
            "--tracking-uri",
            mlflow_server.tracking_uri,
            env=mlflow_server.s3.environment(),
        )
        output = process.communicate(timeout=120)[0]
    assert process.returncode == 1
    assert "nightly retraining on host-a pid 42" in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    assert client.get_registered_model(name).aliases == {}
