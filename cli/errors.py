"""The one place where an exception becomes what a user sees: a single line on stderr and an exit code.

Our own errors (components.errors.TrsPoseError and its subclasses) carry messages written for users:
they are printed as they are, exit 1 (2 for config errors, the code a training pod's
podFailurePolicy treats as "do not retry"). A server that cannot
be reached is named with what to check. Anything else is a bug: one line that says so. In every case
the traceback goes to the debug log, and `trs-pose --debug ...` shows it instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

import click

from components.errors import TrsPoseError

DEBUG_LOG_ENV = "TRS_POSE_DEBUG_LOG"
OUR_PACKAGES = {"components", "pipelines", "steps"}
CONFIG_ERROR_EXIT = 2  # click's usage-error code, and backend.kubernetes.config_error_exit_code's default
# Connection failures of requests/urllib3/botocore/kubernetes, matched by name so none is imported here.
NETWORK_ERRORS = {
    "ConnectionError",
    "ConnectTimeout",
    "ConnectTimeoutError",
    "EndpointConnectionError",
    "MaxRetryError",
    "NewConnectionError",
    "ReadTimeout",
    "ReadTimeoutError",
}


class UserError(click.ClickException):
    """A one-line error with its exit code (click prints `Error: <message>` on stderr)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it from the instance; 1 is only its default


def is_ours(exc: BaseException) -> bool:
    """An error trs-pose raised on purpose, with a message meant for users (also when a DataLoader worker
    raised it and PyTorch re-raised it in the parent as text ending in `components....Error: message`)."""
    if isinstance(exc, TrsPoseError):
        return True
    return "Traceback (most recent call last)" in str(exc) and one_line(exc).split(".")[0] in OUR_PACKAGES


def one_line(exc: BaseException) -> str:
    """The message on one line; a worker's error re-raised with its traceback text keeps only its last line."""
    text = str(exc).strip() or type(exc).__name__
    if "Traceback (most recent call last)" in text:
        text = [line for line in text.splitlines() if line.strip()][-1].strip()
    return " ".join(text.split())


def message_of(exc: BaseException) -> str:
    """one_line without the `package.module.Error: ` prefix a re-raised worker traceback ends with."""
    text = one_line(exc)
    head, sep, rest = text.partition(": ")
    return rest if sep and head.split(".")[0] in OUR_PACKAGES and " " not in head else text


def _names(exc: BaseException) -> set[str]:
    return {klass.__name__ for klass in type(exc).__mro__}


def debug_log_path() -> Path:
    """$TRS_POSE_DEBUG_LOG, else .state/debug.log under the project root."""
    if os.environ.get(DEBUG_LOG_ENV):
        return Path(os.environ[DEBUG_LOG_ENV])
    from components.services.manager import project_root

    return project_root() / ".state" / "debug.log"


def write_debug_log(exc: BaseException) -> Path | None:
    """The full traceback of the last failed command (overwritten each time); None if nowhere is writable."""
    text = f"$ {' '.join(sys.argv)}\n{''.join(traceback.format_exception(exc))}"
    for path in (debug_log_path(), Path(tempfile.gettempdir()) / "trs-pose-debug.log"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return path
        except OSError:
            continue
    return None


def user_error(exc: Exception) -> UserError:
    """What the user sees for `exc`: one line and an exit code."""
    log = write_debug_log(exc)
    where = f"traceback in {log}" if log else "no debug log could be written"
    if is_ours(exc):
        from components.config import ConfigError

        code = CONFIG_ERROR_EXIT if isinstance(exc, ConfigError) else 1
        return UserError(message_of(exc), code)
    if _names(exc) & NETWORK_ERRORS:
        return UserError(
            f"a server did not answer: {one_line(exc)}. Check the URL (config, --tracking-uri, AWS_ENDPOINT_URL_S3, "
            f"kubeconfig) and that the server runs (`trs-pose services status`)"
        )
    if "NoCredentialsError" in _names(exc):  # botocore's, where no command checked for a key first
        return UserError(
            "no S3 key: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            '(for the local services: eval "$(trs-pose services env --with-credentials)")'
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return UserError(f"{exc.filename}: {exc.strerror or one_line(exc)}")
    return UserError(
        f"internal error: {type(exc).__name__}: {one_line(exc)} ({where}; rerun with `trs-pose --debug` to see it)"
    )
