"""`trs-pose` in a child process, as a user's shell runs it (this checkout's code, wide output)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def trs_pose(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
