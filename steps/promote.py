"""Step 7: move `champion` to the new version only when it beats the champion by the margin."""

from __future__ import annotations

from typing import Annotated

from zenml import step

from components.registry.mlflow_client import resolve_tracking_uri
from components.registry.outages import patient_registry_client
from components.registry.promotion_lease import promote_serialised
from steps.artifacts import PromotionArtifact, VersionArtifact
from steps.context import experiment_config


@step(enable_cache=False)
def promote_model(version: VersionArtifact, config: dict) -> Annotated[PromotionArtifact, "promotion"]:
    if version.skipped:
        return PromotionArtifact(
            version="", promoted=False, decision="skipped", reason=version.skipped, champion_version=None
        )
    cfg = experiment_config(config)
    client = patient_registry_client(resolve_tracking_uri(cfg.registry), cfg.registry.retry_deadline_s)
    decision = promote_serialised(client, cfg, version.version)
    return PromotionArtifact(
        version=decision.version,
        promoted=decision.promoted,
        decision=decision.decision,
        reason=decision.reason,
        champion_version=decision.champion_version,
    )
