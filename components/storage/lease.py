"""A mutual-exclusion lease kept as one object in an S3 bucket, taken and handed over atomically.

Taking a free lease is a conditional put (`If-None-Match: *`): of many writers exactly one gets
200, the others 412 PreconditionFailed. A lease whose holder crashed expires at the time written in
it; taking it over is a conditional put with `If-Match` on the ETag that was read, so of many
writers that saw the same expired lease only one replaces it. A holder on this host (same hostname,
same process table) whose process is gone, killed with -9 say, is dead at once: its lease is taken
without waiting for the expiry. Renewal and release are conditional on the holder's own ETag too,
so a holder whose lease was taken over can never remove the new one.
Every body carries a random token, which makes every write's ETag unique. SeaweedFS 4.x, AWS S3
and MinIO honour both conditions (tests/test_promotion_lease.py checks SeaweedFS).

Expiry compares wall clocks of different machines, so the TTL must dwarf their skew (seconds).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from components.errors import TrsPoseError
from components.storage.s3 import S3Uri


class LeaseTimeout(TrsPoseError, RuntimeError):
    """The lease stayed held by someone else for the whole wait; the message names the holder."""


class LeaseLost(TrsPoseError, RuntimeError):
    """A renewal found the lease taken over (it had expired); the holder must stop its work."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    token: str
    acquired_at: float
    expires_at: float
    etag: str
    host: str | None = None  # where the holding process runs, and its pid (leases written before: None)
    pid: int | None = None

    def describe(self, now: float) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.acquired_at))
        return f"{self.holder} (since {since}, expires in {max(0.0, self.expires_at - now):.0f} s)"

    def holder_gone(self) -> bool:
        """The holder ran on this host and its process no longer exists (killed, crashed): its lease
        need not be waited out. A holder elsewhere is only known dead once its lease expires."""
        return self.host == socket.gethostname() and self.pid is not None and not process_exists(self.pid)

    def is_live(self, now: float) -> bool:
        return self.expires_at > now and not self.holder_gone()


def process_exists(pid: int) -> bool:
    """A process with this pid runs here (a zombie, killed and not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def default_holder(purpose: str) -> str:
    """Who holds it, readable by whoever waits: host, pid and what for."""
    return f"{purpose} on {socket.gethostname()} pid {os.getpid()}"


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _is_precondition_failed(exc: ClientError) -> bool:
    return _status(exc) == 412 or exc.response.get("Error", {}).get("Code") == "PreconditionFailed"


def _is_missing(exc: ClientError) -> bool:
    return _status(exc) == 404 or exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "NotFound", "404"}


class S3Lease:
    """`with S3Lease(client, uri, holder, ttl_s).held(timeout_s): ...` runs the block as the only holder.

    While held, a daemon thread renews the lease every third of its TTL, so a long holder keeps it
    and a crashed one loses it at most `ttl_s` after its last renewal.
    """

    def __init__(self, client: Any, uri: S3Uri, holder: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError(f"lease TTL must be positive, got {ttl_s}")
        self.client, self.uri, self.holder, self.ttl_s = client, uri, holder, ttl_s
        self.record: LeaseRecord | None = None

    def _body(self, token: str, now: float) -> bytes:
        return json.dumps(
            {
                "holder": self.holder,
                "token": token,
                "acquired_at": now,
                "expires_at": now + self.ttl_s,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
        ).encode()

    def current(self) -> LeaseRecord | None:
        """The lease as stored now, or None when nobody holds it."""
        try:
            response = self.client.get_object(Bucket=self.uri.bucket, Key=self.uri.key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        data = json.loads(response["Body"].read())
        return LeaseRecord(
            str(data["holder"]),
            str(data["token"]),
            float(data["acquired_at"]),
            float(data["expires_at"]),
            response["ETag"],
            data.get("host"),
            int(data["pid"]) if data.get("pid") is not None else None,
        )

    def _put(self, condition: dict[str, str]) -> LeaseRecord | None:
        """One conditional write of a fresh body; the new record, or None when the condition failed."""
        token, now = uuid.uuid4().hex, time.time()
        body = self._body(token, now)
        try:
            response = self.client.put_object(Bucket=self.uri.bucket, Key=self.uri.key, Body=body, **condition)
        except ClientError as exc:
            if _is_precondition_failed(exc) or _is_missing(exc):
                return None
            raise
        return LeaseRecord(
            self.holder, token, now, now + self.ttl_s, response["ETag"], socket.gethostname(), os.getpid()
        )

    def try_acquire(self) -> LeaseRecord | None:
        """Take the lease if it is free, expired or held by a process of this host that is gone.
        Returns None on success, else the holder's record."""
        while True:
            taken = self._put({"IfNoneMatch": "*"})
            if taken is not None:
                self.record = taken
                return None
            other = self.current()
            if other is None:  # released between our put and our read: try again
                continue
            if other.is_live(time.time()):
                return other
            taken = self._put({"IfMatch": other.etag})  # only one of those who saw it expired wins
            if taken is not None:
                self.record = taken
                return None
            holder = self.current()
            if holder is not None:
                return holder

    def acquire(self, timeout_s: float, poll_s: float = 0.2) -> None:
        """Wait up to `timeout_s` for the lease; LeaseTimeout naming the holder when it stays taken."""
        deadline = time.monotonic() + timeout_s
        while True:
            holder = self.try_acquire()
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise LeaseTimeout(
                    f"{self.uri}: lease held by {holder.describe(time.time())}; gave up after {timeout_s:.0f} s"
                )
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))

    def renew(self) -> None:
        if self.record is None:
            raise LeaseLost(f"{self.uri}: not held by {self.holder}")
        renewed = self._put({"IfMatch": self.record.etag})
        if renewed is None:
            self.record = None
            raise LeaseLost(f"{self.uri}: lease of {self.holder} expired and was taken over")
        self.record = renewed

    def release(self) -> None:
        """Delete the lease if it is still ours; a lease taken over after expiry is left to its new holder."""
        record, self.record = self.record, None
        if record is None:
            return
        try:
            self.client.delete_object(Bucket=self.uri.bucket, Key=self.uri.key, IfMatch=record.etag)
        except BotoCoreError:
            return  # the store is unreachable: the lease expires by itself
        except ClientError as exc:
            if not (_is_precondition_failed(exc) or _is_missing(exc)):
                raise

    @contextmanager
    def held(self, timeout_s: float) -> Iterator[LeaseRecord]:
        """Acquire (waiting up to `timeout_s`), keep renewed, release at the end of the block."""
        self.acquire(timeout_s)
        with self.kept() as record:
            yield record

    @contextmanager
    def kept(self) -> Iterator[LeaseRecord]:
        """For a lease already acquired: a daemon thread renews it every third of its TTL until the
        block ends, then it is released. A failed renewal (store unreachable) is tried again at the
        next period; only a lease found taken over stops the renewals."""
        record = self.record
        if record is None:
            raise LeaseLost(f"{self.uri}: not held by {self.holder}")
        stop = threading.Event()

        def keep_renewed() -> None:
            while not stop.wait(self.ttl_s / 3):
                try:
                    self.renew()
                except LeaseLost:
                    return
                except (ClientError, BotoCoreError, OSError):
                    continue

        renewer = threading.Thread(target=keep_renewed, name=f"lease {self.uri.key}", daemon=True)
        renewer.start()
        try:
            yield record
        finally:
            stop.set()
            renewer.join()
            self.release()
