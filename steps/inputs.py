"""Step 5: the fingerprint of what the run learns from, and, with `--if-changed`, whether it trains at all.

A scheduled run whose inputs a registered version already has (the champion, or a challenger that lost
to it) ends here: the steps after it do nothing, the run is tagged `skipped` in ZenML, and nothing is
registered (components/registry/changes.py)."""

from __future__ import annotations

from typing import Annotated

from zenml import add_tags, log_metadata, step

from components.inputs_fingerprint import inputs_fingerprint
from components.registry.changes import SKIPPED_TAG, changes_since
from components.registry.mlflow_client import resolve_tracking_uri
from components.registry.outages import patient_registry_client
from steps.artifacts import DatasetArtifact, InputsArtifact
from steps.context import experiment_config, run_name


@step(enable_cache=False)  # the registry changes between runs
def check_inputs(
    dataset: DatasetArtifact, manifest: dict, config: dict, if_changed: bool
) -> Annotated[InputsArtifact, "inputs"]:
    cfg = experiment_config(config)
    labeled = dict(dataset.fingerprints)
    labeled.update({f"{name}.sha256": entry["sha256"] for name, entry in manifest["inputs"].items()
                    if name not in ("train_ann", "val_ann")})  # fmt: skip  # detections files
    fingerprint = inputs_fingerprint(labeled, manifest.get("unlabeled_sources"), cfg)
    if not if_changed:
        reason = f"trains on every run without --if-changed (fingerprint {fingerprint.short})"
        return InputsArtifact(fingerprint=fingerprint.digest, parts=fingerprint.parts, train=True, reason=reason)
    client = patient_registry_client(resolve_tracking_uri(cfg.registry), cfg.registry.retry_deadline_s)
    changes = changes_since(client, cfg.registry.model_name, fingerprint.digest, fingerprint.short)
    log_metadata(metadata={"inputs_fingerprint": fingerprint.digest, "trains": changes.new, "reason": changes.reason})
    if not changes.new:
        add_tags(tags=[SKIPPED_TAG], run=run_name())
    return InputsArtifact(
        fingerprint=fingerprint.digest, parts=fingerprint.parts, train=changes.new, reason=changes.reason
    )
