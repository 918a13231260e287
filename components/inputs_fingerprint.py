"""The fingerprint of what a run learns from: its data and its recipe, not where or how it runs.

Two runs with the same fingerprint train the same model (same labels, same unlabeled sources, same
recipe and seed), so a scheduled run whose fingerprint a registered version already has (the
champion, or a challenger that lost to it) has nothing to add. Parts:
- the labeled data: the content fingerprints of the training and validation annotation files and
  image folders (ingest's: names, sizes and content hashes of every file);
- every unlabeled source: its fingerprint over its files and their hashes, and where its boxes came from;
- the resolved config without the fields that only say where or how the run happens (`RUN_ONLY`):
  its name, the data's locations (their content is above), caches, checkpoints, servers, loader
  processes, logging and the backend. `train.init`
  stays as written (`champion`, not the version it pins), so a warm-started champion does not make
  the next scheduled run look new.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from components.config import ExperimentConfig

RUN_ONLY: tuple[tuple[str, ...], ...] = (
    ("name",),
    *(("data", field) for field in ("root", "train_split", "val_split", "train_ann", "train_images", "val_ann")),
    ("data", "val_images"),
    ("data", "unlabeled", "images"),
    ("data", "unlabeled", "videos"),
    ("data", "unlabeled", "detector", "weights"),  # its sha256 is in the unlabeled part
    ("data", "cache_dir"),
    ("train", "checkpoint"),
    ("train", "num_workers"),
    ("train", "log_every"),
    ("train", "device"),
    ("train", "compile"),
    ("eval", "num_workers"),
    ("eval", "batch_size"),
    ("suggest",),
    ("storage",),
    ("registry",),
    ("backend",),
)
SHORT = 12  # hex digits shown in messages


@dataclass(frozen=True)
class InputsFingerprint:
    digest: str  # sha256 hex over `parts`
    parts: dict[str, Any]

    @property
    def short(self) -> str:
        return self.digest[:SHORT]


def recipe(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config as JSON without the run-only fields."""
    tree = cfg.model_dump(mode="json")
    for path in RUN_ONLY:
        node = tree
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return tree


def inputs_fingerprint(
    labeled: dict[str, str], unlabeled: dict[str, Any] | None, cfg: ExperimentConfig
) -> InputsFingerprint:
    """`labeled`: location -> content fingerprint (train_ann, train_images, val_ann, val_images);
    `unlabeled`: the split manifest's `unlabeled_sources` (None without raw unlabeled data)."""
    sources = None
    if unlabeled is not None:  # where each source was is a location; what it held is its fingerprint
        sources = {
            **unlabeled,
            "sources": [{k: v for k, v in s.items() if k != "source"} for s in unlabeled["sources"]],
        }
        sources["boxes"] = {k: v for k, v in unlabeled.get("boxes", {}).items() if k != "path"}
    parts = {"labeled": dict(sorted(labeled.items())), "unlabeled": sources, "recipe": recipe(cfg)}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return InputsFingerprint(digest, parts)
