"""Patience with remote stores: transient failures are retried with exponential backoff up to a deadline.

A storage or registry hiccup of seconds should not end a run of hours. The caller keeps its
in-memory state while a call is retried; past the deadline the call fails with `StoreUnavailable`,
one line that names the endpoint and what was being written (the last error is chained).
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from components.errors import TrsPoseError

T = TypeVar("T")
Classifier = Callable[[BaseException], bool]

FIRST_WAIT_S = 0.5
LONGEST_WAIT_S = 15.0


class StoreUnavailable(TrsPoseError, RuntimeError):
    """A store stayed unreachable past the retry deadline."""


def with_retries(
    action: Callable[[], T],
    *,
    transient: Classifier,
    deadline_s: float,
    endpoint: str,
    what: str,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """`action()`, again after 0.5, 1, 2, ... (at most 15) s with jitter while `transient(error)`,
    until `deadline_s` has passed since the first try; other errors pass through at once."""
    started = time.monotonic()
    wait = FIRST_WAIT_S
    attempts = 0
    while True:
        attempts += 1
        try:
            return action()
        except Exception as exc:
            if not transient(exc):
                raise
            remaining = deadline_s - (time.monotonic() - started)
            if remaining <= 0:
                raise StoreUnavailable(
                    f"{endpoint} unreachable while writing {what}: gave up after {attempts} attempts in "
                    f"{time.monotonic() - started:.0f} s (deadline {deadline_s:.0f} s); last error: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                ) from exc
            (sleep or time.sleep)(min(wait * random.uniform(0.8, 1.2), remaining))
            wait = min(wait * 2, LONGEST_WAIT_S)


class Patient:
    """A proxy for a client object (boto3 S3, MlflowClient): every method call goes through
    `with_retries`, described by `describe(method, kwargs)` in the error."""

    def __init__(
        self,
        inner: Any,
        *,
        transient: Classifier,
        deadline_s: float,
        endpoint: str,
        describe: Callable[[str, tuple[Any, ...], dict[str, Any]], str],
    ) -> None:
        self._inner, self._transient, self._deadline_s = inner, transient, deadline_s
        self._endpoint, self._describe = endpoint, describe

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute) or name.startswith("_"):
            return attribute

        def patient_call(*args: Any, **kwargs: Any) -> Any:
            streams = [(a, a.tell()) for a in (*args, *kwargs.values()) if isinstance(a, io.IOBase) and a.seekable()]

            def attempt() -> Any:
                for stream, position in streams:  # a failed upload may have read part of its body
                    stream.seek(position)
                return attribute(*args, **kwargs)

            return with_retries(
                attempt,
                transient=self._transient,
                deadline_s=self._deadline_s,
                endpoint=self._endpoint,
                what=self._describe(name, args, kwargs),
            )

        return patient_call
