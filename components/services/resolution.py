"""Which servers and credentials a command uses, decided once and the same way for every command.

Each value comes from the first source that has it: a flag (`--tracking-uri`, `--endpoint-url`,
`--zenml-url`), then the config (`registry.tracking_uri`, `storage.endpoint_url`, `storage.bucket`),
then the environment (`MLFLOW_TRACKING_URI`, `AWS_*`, `ZENML_STORE_*`), then the state folder of the
local services (`trs-pose services up`). A credential goes with its server: the local services' S3
key and ZenML API key complete a local server's bare URL (`services env` prints no secrets), and are
never sent to another server. Nothing falls back to a store on this machine's disk (MLflow's
./mlflow.db or ./mlruns): a command without a server fails at once, with one line naming what is
missing; a server that does not answer fails in seconds, and a local one says `trs-pose services up`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from components.config import ExperimentConfig
from components.services.manager import ENDPOINTS_FILE, default_state_dir
from components.services.process import ServiceError
from components.services.reachability import MLFLOW_CHECK, S3_CHECK, require_reachable
from components.services.seaweedfs import CREDENTIALS_FILE, S3Endpoint
from components.services.zenml_server import STORE_API_KEY_ENV, STORE_URL_ENV, ZenMLEndpoint, load_zenml_credentials

ZENML_CHECK = f"check --zenml-url or ${STORE_URL_ENV}, and that the server runs"
START_LOCAL = "start them with `trs-pose services up`"


@dataclass(frozen=True)
class Setting:
    """A resolved value and where it came from (a flag, a config field, a variable, the local services)."""

    value: str
    source: str


@dataclass(frozen=True)
class RecordedServices:
    """What a state folder says about the local services; a part `up` never recorded is None."""

    state_dir: Path
    s3: S3Endpoint | None = None
    tracking_uri: str | None = None
    zenml: ZenMLEndpoint | None = None
    zenml_url: str | None = None


def recorded_services(state_dir: Path) -> RecordedServices:
    """The local services recorded in `state_dir` (read only: nothing is created there)."""
    try:
        endpoints = json.loads((state_dir / ENDPOINTS_FILE).read_text())
    except (OSError, ValueError):
        return RecordedServices(state_dir)
    s3 = None
    seaweedfs = endpoints.get("seaweedfs") or {}
    try:
        keys = json.loads((state_dir / CREDENTIALS_FILE).read_text())
    except (OSError, ValueError):
        keys = None
    if seaweedfs.get("endpoint_url") and keys:
        bucket = seaweedfs.get("bucket") or "trs-pose"
        s3 = S3Endpoint(seaweedfs["endpoint_url"], keys["access_key"], keys["secret_key"], bucket)
    zenml_url = (endpoints.get("zenml") or {}).get("url")
    zenml = None
    if zenml_url:
        credentials = load_zenml_credentials(state_dir)
        if credentials is not None and credentials.api_key:
            zenml = ZenMLEndpoint(zenml_url, credentials.api_key)
    tracking_uri = (endpoints.get("mlflow") or {}).get("tracking_uri") or None
    return RecordedServices(state_dir, s3, tracking_uri, zenml, zenml_url)


def _first(*candidates: tuple[str | None, str]) -> Setting | None:
    for value, source in candidates:
        if value:
            return Setting(value, source)
    return None


def _same_url(left: str | None, right: str | None) -> bool:
    return bool(left and right and left.rstrip("/") == right.rstrip("/"))


@dataclass(frozen=True)
class Servers:
    """The resolved servers of one command, with the credentials that go with them."""

    local: RecordedServices | None  # None with --no-local-services
    mlflow: Setting | None
    s3: Setting | None  # the S3 endpoint; None: AWS itself
    bucket: str
    region: str
    s3_key: tuple[str, str] | None = field(repr=False)  # None: boto3's own chain (profile, instance role)
    zenml: Setting | None
    zenml_key: str | None = field(repr=False)

    def _is_local(self, setting: Setting | None, local_url: str | None) -> bool:
        return setting is not None and _same_url(setting.value, local_url)

    def _missing_local(self) -> str:
        if self.local is None:
            return "the local services are not used (--no-local-services)"
        return f"no local services recorded in {self.local.state_dir}; {START_LOCAL}"

    def tracking_uri(self) -> str:
        """The MLflow server, or one line naming the places it may come from."""
        if self.mlflow is None:
            raise ServiceError(
                "no MLflow server: pass --tracking-uri, set registry.tracking_uri or $MLFLOW_TRACKING_URI, "
                f"or use the local services ({self._missing_local()})"
            )
        return self.mlflow.value

    def zenml_endpoint(self) -> ZenMLEndpoint:
        """The ZenML server and its API key, or one line naming what is missing."""
        if self.zenml is None:
            if self.local is None:
                missing = [STORE_URL_ENV] + ([] if self.zenml_key else [STORE_API_KEY_ENV])
                raise ServiceError(
                    f"{' and '.join(missing)} not set: every run records into a ZenML server "
                    "(in Kubernetes: the Secret named by backend.kubernetes.zenml_secret, with both keys)"
                )
            raise ServiceError(
                f"no ZenML server: pass --zenml-url or set {STORE_URL_ENV} and {STORE_API_KEY_ENV}, "
                f"or use the local services ({self._missing_local()})"
            )
        if not self.zenml_key:
            raise ServiceError(
                f"{STORE_API_KEY_ENV} not set: the ZenML server at {self.zenml.value} ({self.zenml.source}) needs "
                "an API key (`zenml service-account create` on that server; for the local services: "
                'eval "$(trs-pose services env --with-credentials)")'
            )
        return ZenMLEndpoint(self.zenml.value, self.zenml_key)

    def require_s3_key(self, what: str) -> None:
        """One line naming the variables when `what` needs S3 and no key is anywhere to be found."""
        if self.s3_key is not None or _default_chain_has_key():
            return
        where = f"S3 at {self.s3.value} ({self.s3.source})" if self.s3 else "AWS S3"
        raise ServiceError(
            f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set: {what} needs {where} and its key "
            '(for the local services: eval "$(trs-pose services env --with-credentials)")'
        )

    def probe(self, *, mlflow: bool = False, s3: bool = False, zenml: bool = False) -> None:
        """Connect once to each server asked for; ServiceUnreachable in seconds, naming the URL and what
        to check (for a local server: `trs-pose services up`)."""
        local = self.local or RecordedServices(Path())
        checks = (
            (mlflow, self.mlflow, local.tracking_uri, "the MLflow server", MLFLOW_CHECK),
            (s3, self.s3, local.s3.endpoint_url if local.s3 else None, "the S3 endpoint", S3_CHECK),
            (zenml, self.zenml, local.zenml_url, "the ZenML server", ZENML_CHECK),
        )
        for wanted, setting, local_url, what, check in checks:
            if not wanted or setting is None:
                continue
            if self._is_local(setting, local_url):
                check = f"the local services of {local.state_dir} are not running; {START_LOCAL}"
            require_reachable(setting.value, what, check)

    def apply(self, cfg: ExperimentConfig) -> ExperimentConfig:
        """`cfg` naming the resolved MLflow server, S3 endpoint and bucket (what a run records)."""
        registry = cfg.registry.model_copy(update={"tracking_uri": self.mlflow.value if self.mlflow else None})
        storage = cfg.storage.model_copy(
            update={"endpoint_url": self.s3.value if self.s3 else None, "bucket": self.bucket}
        )
        return cfg.model_copy(update={"registry": registry, "storage": storage})

    def export(self) -> None:
        """Give this process's S3 clients (boto3 in the steps, ZenML's artifact store) the resolved key
        and endpoint; a variable already set is left as it is. Credentials go nowhere else."""
        if self.s3_key is not None:
            os.environ.setdefault("AWS_ACCESS_KEY_ID", self.s3_key[0])
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", self.s3_key[1])
        os.environ.setdefault("AWS_DEFAULT_REGION", self.region)
        if self.s3 is not None:
            os.environ.setdefault("AWS_ENDPOINT_URL_S3", self.s3.value)


def _default_chain_has_key() -> bool:
    """boto3 would find a key without us (a profile in ~/.aws, a container or instance role)."""
    try:
        import botocore.session

        return botocore.session.get_session().get_credentials() is not None
    except Exception:
        return False


def resolve_servers(
    cfg: ExperimentConfig | None = None,
    *,
    tracking_uri: str | None = None,
    endpoint_url: str | None = None,
    zenml_url: str | None = None,
    use_local: bool = True,
    state_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Servers:
    """Flags (the keyword arguments), then `cfg`, then `environ`, then the local services' state folder."""
    environ = os.environ if environ is None else environ
    cfg = cfg or ExperimentConfig()
    local = recorded_services(state_dir or default_state_dir()) if use_local else None
    known = local or RecordedServices(Path())
    local_s3 = known.s3
    where = f"the local services ({known.state_dir})"

    mlflow = _first(
        (tracking_uri, "--tracking-uri"),
        (cfg.registry.tracking_uri, "registry.tracking_uri"),
        (environ.get("MLFLOW_TRACKING_URI"), "$MLFLOW_TRACKING_URI"),
        (known.tracking_uri, where),
    )
    s3 = _first(
        (endpoint_url, "--endpoint-url"),
        (cfg.storage.endpoint_url, "storage.endpoint_url"),
        (environ.get("AWS_ENDPOINT_URL_S3"), "$AWS_ENDPOINT_URL_S3"),
        (environ.get("AWS_ENDPOINT_URL"), "$AWS_ENDPOINT_URL"),
        (local_s3.endpoint_url if local_s3 else None, where),
    )
    s3_is_local = local_s3 is not None and s3 is not None and _same_url(s3.value, local_s3.endpoint_url)
    bucket = cfg.storage.bucket
    if "bucket" not in cfg.storage.model_fields_set and s3_is_local and local_s3 is not None:
        bucket = local_s3.bucket
    s3_key: tuple[str, str] | None = None
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        s3_key = (environ["AWS_ACCESS_KEY_ID"], environ["AWS_SECRET_ACCESS_KEY"])
    elif s3_is_local and local_s3 is not None:
        s3_key = (local_s3.access_key, local_s3.secret_key)

    zenml = _first(
        (zenml_url, "--zenml-url"),
        (environ.get(STORE_URL_ENV), f"${STORE_URL_ENV}"),
        (known.zenml_url, where),
    )
    zenml_key = environ.get(STORE_API_KEY_ENV) or None
    if zenml_key is None and known.zenml is not None and zenml is not None and _same_url(zenml.value, known.zenml.url):
        zenml_key = known.zenml.api_key
    return Servers(
        local=local,
        mlflow=mlflow,
        s3=s3,
        bucket=bucket,
        region=cfg.storage.region,
        s3_key=s3_key,
        zenml=zenml,
        zenml_key=zenml_key,
    )
