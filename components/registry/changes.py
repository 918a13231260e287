"""Whether a run's inputs are new to the registry: the decision behind `trs-pose run --if-changed`.

Every registered version carries the fingerprint of what it learned from (components/inputs_fingerprint.py)
as a version tag. Inputs are nothing new when the champion has the same fingerprint, or a challenger
that lost to the champion on those inputs does: with the same data, recipe and seed it is the same
model, so it would lose again.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.registry.lifecycle import TAG_DECISION, current_champion
from components.registry.mlflow_client import MlflowClientLike

TAG_INPUTS = "inputs.fingerprint"
TAG_INIT = "init.source"  # where a warm start's weights came from: models:/NAME/VERSION or a checkpoint
LOST = "kept champion"  # promotion's decision for a challenger that did not beat the champion
SKIPPED_TAG = "skipped"  # the tag of a pipeline run that found nothing new (trs-pose run --if-changed)


@dataclass(frozen=True)
class Changes:
    new: bool
    reason: str  # one line: why the run trains, or "nothing new since vN (fingerprint ...)"
    same_as: str | None = None  # the version with these inputs


def changes_since(client: MlflowClientLike, model_name: str, fingerprint: str, short: str) -> Changes:
    """Compare `fingerprint` with the champion's and with those of the challengers that lost to it."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException:
        return Changes(True, f"no registered model {model_name} yet")
    champion = current_champion(client, model_name)
    if champion is not None and (champion.tags or {}).get(TAG_INPUTS) == fingerprint:
        return Changes(False, f"nothing new since v{champion.version} (fingerprint {short})", str(champion.version))
    lost = sorted(
        (
            v
            for v in versions
            if (v.tags or {}).get(TAG_INPUTS) == fingerprint and (v.tags or {}).get(TAG_DECISION) == LOST
        ),
        key=lambda v: int(v.version),
    )
    if lost:
        version = lost[-1].version
        return Changes(
            False, f"nothing new since v{version}, which lost to the champion (fingerprint {short})", str(version)
        )
    return Changes(True, f"new inputs (fingerprint {short})")
