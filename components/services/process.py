"""Background server processes: start detached, find again by PID file, stop only our own.

A PID file alone is not proof of ownership (PIDs are reused), so every stop first checks that the
process command line still contains a marker we chose at start (the state folder's path), and signals
the whole process group because MLflow and SeaweedFS both fork workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from components.atomic_files import write_atomically
from components.errors import TrsPoseError

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class ServiceError(TrsPoseError, RuntimeError):
    """A server that would not start, stay up or stop; the message ends with its log's tail."""


def find_free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Distinct free TCP ports, held open together while choosing so none is handed out twice."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()  # bound here, in the parent: dlopen between fork and exec could deadlock


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the child when its parent dies, so a killed test run leaves no server."""
    if _LIBC is not None and hasattr(_LIBC, "prctl"):
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def start_process(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    tie_to_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (so it outlives the CLI and can be stopped as a group)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if tie_to_parent else None,
        )


def command_line(pid: int) -> str | None:
    """The process's command line joined by spaces; None when no such process is alive.

    Right after exec the kernel briefly reports an empty command line, so an empty one is retried
    for a moment; a zombie (also empty) counts as gone, and a live process without one as "".
    """
    for _ in range(40):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            return None
        if state in {"Z", "X"}:
            return None
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace").strip()
        time.sleep(0.025)
    return ""


def is_our_process(pid: int, marker: str) -> bool:
    line = command_line(pid)
    return line is not None and marker in line


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    write_atomically(pid_file, f"{pid}\n")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(
    pid: int, marker: str, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> bool:
    """SIGTERM the group led by `pid` if its leader is ours, SIGKILL after `timeout`. True if stopped."""
    if not is_our_process(pid, marker):
        if process is not None:
            process.poll()
        return False
    pgid = os.getpgid(pid)
    if pgid != pid:
        raise ServiceError(f"process {pid} does not lead its own process group; refusing to signal group {pgid}")
    os.killpg(pgid, signal.SIGTERM)
    if _wait_group_gone(pgid, timeout, process):
        return True
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    if not _wait_group_gone(pgid, 10.0, process):
        raise ServiceError(f"process group {pgid} survived SIGKILL")
    return True


def _wait_group_gone(pgid: int, timeout: float, process: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            process.poll()
        else:
            _reap(pgid)
        if not _group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def health_answers(base_url: str, timeout: float = 2.0) -> bool:
    """GET <base_url>/health answers 200 (MLflow's and ZenML's health endpoint alike)."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def log_tail(log_path: Path, lines: int = 20) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_until_healthy(
    check: Callable[[], bool],
    process: subprocess.Popen[bytes],
    name: str,
    log_path: Path,
    timeout: float,
    interval: float = 0.25,
) -> float:
    """Poll `check` until it passes; fail fast if the process dies. Returns the seconds waited."""
    started = time.monotonic()
    while True:
        if process.poll() is not None:
            raise ServiceError(
                f"{name} exited with code {process.returncode} before becoming healthy; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise ServiceError(
                f"{name} not healthy after {timeout:.0f} s; last lines of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(interval)
