"""Fixtures shared across the suite: paths to ../shared (skipping when absent) and free ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("TRS_POSE_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is absent (it ships beside the development checkout only)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def coco_mini(shared_dir: Path) -> Path:
    root = shared_dir / "data" / "coco-mini"
    if not (root / "annotations").is_dir():
        pytest.skip(f"{root} is absent")
    return root


@pytest.fixture(scope="session")
def k8s_schemas(shared_dir: Path) -> Path:
    root = shared_dir / "k8s-schemas"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    return root


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    return find_free_port()


pytest_plugins = ["tests.service_fixtures", "tests.serving_fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules marked slow as a whole (they start, stop and restart servers) run first. `make test`
    hands whole modules to two workers in this order, so their minutes of waiting on servers overlap
    the quick modules instead of coming last. The sort is stable: a module's tests stay together."""

    def whole_module_is_slow(item: pytest.Item) -> bool:
        module = item.getparent(pytest.Module)
        return module is not None and any(mark.name == "slow" for mark in module.own_markers)

    items.sort(key=lambda item: not whole_module_is_slow(item))
