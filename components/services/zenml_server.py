"""A loopback ZenML server (PyPI `zenml[server]`, dashboard included): SQLite store, generated credentials.

The server is uvicorn serving ZenML's FastAPI app, configured through its environment only. On first
start it activates itself with an admin whose password is generated here; `start` then creates a
service account with an API key, which is what every client (CLI, tests, CronJob) uses, exactly as it
would with a team's server: `ZENML_STORE_URL` + `ZENML_STORE_API_KEY`. Passwords, the JWT signing key
and the API key live owner-only in the state folder, never on a command line.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.services.process import (
    LOOPBACK,
    ServiceError,
    find_free_ports,
    health_answers,
    start_process,
    stop_process_group,
    wait_until_healthy,
)
from components.services.seaweedfs import S3Endpoint, write_private

CREDENTIALS_FILE = "zenml_credentials.json"
SERVICE_ACCOUNT = "trs-pose"
STORE_URL_ENV = "ZENML_STORE_URL"
STORE_API_KEY_ENV = "ZENML_STORE_API_KEY"


@dataclass(frozen=True)
class ZenMLCredentials:
    """The admin login (for the dashboard), the JWT signing key, and the clients' API key once made."""

    admin_user: str
    admin_password: str = field(repr=False)
    jwt_secret: str = field(repr=False)
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ZenMLEndpoint:
    """How a client reaches a ZenML server: its URL and an API key (never printed)."""

    url: str
    api_key: str = field(repr=False)

    def environment(self) -> dict[str, str]:
        return {STORE_URL_ENV: self.url, STORE_API_KEY_ENV: self.api_key}


def load_zenml_credentials(state_dir: Path) -> ZenMLCredentials | None:
    """The stored credentials; None when the server was never started from `state_dir`."""
    stored = state_dir / CREDENTIALS_FILE
    return ZenMLCredentials(**json.loads(stored.read_text())) if stored.exists() else None


def load_or_create_zenml_credentials(state_dir: Path) -> ZenMLCredentials:
    """Only the server's start may create them: a reader that did would hold a password the running
    server does not know."""
    credentials = load_zenml_credentials(state_dir)
    if credentials is None:
        credentials = ZenMLCredentials("admin", secrets.token_urlsafe(24), secrets.token_hex(32))
        _save(state_dir, credentials)
    return credentials


def _save(state_dir: Path, credentials: ZenMLCredentials) -> None:
    write_private(state_dir / CREDENTIALS_FILE, json.dumps(vars(credentials)))


def _request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30.0) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise ServiceError(f"ZenML server {url}: HTTP {exc.code}: {detail}") from exc


def _login(url: str, form: dict[str, str]) -> str:
    """An access token for a password or API-key login (OAuth2 form post to /api/v1/login)."""
    body = urllib.parse.urlencode(form).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return str(_request(f"{url}/api/v1/login", body, headers)["access_token"])


def api_key_works(url: str, api_key: str) -> bool:
    try:
        _login(url, {"password": api_key})
    except ServiceError:
        return False
    return True


def create_api_key(url: str, admin_user: str, admin_password: str) -> str:
    """A service account `trs-pose` (made once) and a fresh API key for it; returns the key's value."""
    token = _login(url, {"username": admin_user, "password": admin_password})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    accounts = f"{url}/api/v1/service_accounts"
    found = _request(f"{accounts}?name={SERVICE_ACCOUNT}", headers=headers)["items"]
    if found:
        account = found[0]
    else:
        body = json.dumps({"name": SERVICE_ACCOUNT, "active": True, "description": "trs-pose CLI and CronJob"})
        account = _request(accounts, body.encode(), headers)
    key_body = json.dumps({"name": f"key-{secrets.token_hex(4)}", "description": "made by `trs-pose services up`"})
    created = _request(f"{accounts}/{account['id']}/api_keys", key_body.encode(), headers)
    return str(created["body"]["key"])


class ZenMLServer:
    """uvicorn serving `zenml.zen_server.zen_server_api:app`, its SQLite store under `state_dir/zenml`."""

    name = "zenml"

    def __init__(self, state_dir: Path, s3: S3Endpoint | None = None, port: int | None = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.s3 = s3  # lets the dashboard show artifacts that live in the bucket
        self.port = port or find_free_ports(1)[0]
        self.credentials = load_or_create_zenml_credentials(self.state_dir)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return self.state_dir / "zenml"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "zenml.log"

    @property
    def marker(self) -> str:
        """Appears in this server's command line only (its home folder), checked before stopping."""
        return f"--app-dir={self.home}"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "zenml.zen_server.zen_server_api:app",
            self.marker,
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-server-header",
        ]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "AWS_"))}
        env.update(
            {
                "ZENML_SERVER": "true",
                "ZENML_CONFIG_PATH": str(self.home / "config"),
                "ZENML_LOCAL_STORES_PATH": str(self.home / "local_stores"),
                "ZENML_STORE_URL": f"sqlite:///{self.home / 'zenml.db'}",
                "ZENML_SERVER_AUTO_ACTIVATE": "true",
                "ZENML_DEFAULT_USER_NAME": self.credentials.admin_user,
                "ZENML_DEFAULT_USER_PASSWORD": self.credentials.admin_password,
                "ZENML_SERVER_JWT_SECRET_KEY": self.credentials.jwt_secret,
                "ZENML_ANALYTICS_OPT_IN": "false",
                "ZENML_ENABLE_RICH_TRACEBACK": "false",
            }
        )
        if self.s3 is not None:
            env.update(self.s3.environment())
        return env

    def start(self, timeout: float = 120.0, tie_to_parent: bool = False) -> ZenMLEndpoint:
        """Start, wait for /health, and make sure the stored API key works (creating one if not)."""
        (self.home / "config").mkdir(parents=True, exist_ok=True)
        self.process = start_process(
            self.command(), self.log_path, env=self.environment(), cwd=self.home, tie_to_parent=tie_to_parent
        )
        wait_until_healthy(lambda: health_answers(self.url), self.process, self.name, self.log_path, timeout)
        return self.endpoint()

    def endpoint(self) -> ZenMLEndpoint:
        """The clients' endpoint; makes a new API key when none is stored or the stored one is refused."""
        key = self.credentials.api_key
        if not key or not api_key_works(self.url, key):
            key = create_api_key(self.url, self.credentials.admin_user, self.credentials.admin_password)
            self.credentials = ZenMLCredentials(**{**vars(self.credentials), "api_key": key})
            _save(self.state_dir, self.credentials)
        return ZenMLEndpoint(self.url, key)

    def stop(self, timeout: float = 15.0) -> bool:
        if self.process is None:
            return False
        stopped = stop_process_group(self.process.pid, self.marker, timeout, self.process)
        self.process = None
        return stopped
