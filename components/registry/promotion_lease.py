"""Promotion, forced promotion and rollback of one registered model, one at a time.

MLflow aliases have no compare-and-swap: two promotions that read the same champion both move the
alias and both append to the history, so the later (maybe worse) one wins and a replaced champion
goes missing. Each move therefore runs under one S3 lease per model (`components.storage.lease`),
and reads champion, its AP and the history only once it holds the lease.
"""

from __future__ import annotations

from components.config import ExperimentConfig
from components.registry.lifecycle import PromotionDecision, RegistryError, promote, rollback
from components.registry.mlflow_client import MlflowClientLike
from components.storage.lease import LeaseTimeout, S3Lease, default_holder
from components.storage.s3 import S3Uri, s3_client

LEASE_PREFIX = "locks/registry"


def registry_lease(cfg: ExperimentConfig, purpose: str) -> S3Lease:
    """The lease guarding `cfg.registry.model_name`, in `cfg.storage.bucket`."""
    uri = S3Uri(cfg.storage.bucket, f"{LEASE_PREFIX}/{cfg.registry.model_name}.lease")
    client = s3_client(cfg.storage.endpoint_url, cfg.storage.region)
    return S3Lease(client, uri, default_holder(purpose), cfg.registry.lease_ttl_s)


def promote_serialised(
    client: MlflowClientLike, cfg: ExperimentConfig, version: str | int, force: bool = False
) -> PromotionDecision:
    """`promote` under the model's lease; RegistryError naming the holder when it stays taken."""
    name = cfg.registry.model_name
    client.get_model_version(name, str(version))  # an unknown version or an unreachable MLflow fails before S3
    lease = registry_lease(cfg, f"promote {name} v{version}{' --force' if force else ''}")
    try:
        with lease.held(cfg.registry.lease_timeout_s):
            return promote(client, name, version, cfg.registry.promotion_margin, force=force)
    except LeaseTimeout as exc:
        raise RegistryError(f"{name} version {version} not promoted: {exc}") from exc


def rollback_serialised(client: MlflowClientLike, cfg: ExperimentConfig) -> tuple[str, str]:
    """`rollback` under the model's lease."""
    name = cfg.registry.model_name
    client.get_registered_model(name)  # as above: MLflow's own errors come first
    lease = registry_lease(cfg, f"rollback {name}")
    try:
        with lease.held(cfg.registry.lease_timeout_s):
            return rollback(client, name)
    except LeaseTimeout as exc:
        raise RegistryError(f"{name}: not rolled back: {exc}") from exc
