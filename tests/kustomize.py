"""A minimal `kustomize build` for k8s/, so overlays can be validated where no kustomize binary exists.

It implements only what k8s/ uses: `resources` (files, or directories with a kustomization.yaml),
`namespace` (set on every namespaced object and on ServiceAccount subjects of RoleBindings),
`images` (newName / newTag / digest) and `patches` with a `target` and an inline JSON 6902 patch.
Any other key is refused rather than ignored, so an overlay never validates as something it is not.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]
SUPPORTED_KEYS = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume"}


class KustomizeError(ValueError):
    """A kustomization this minimal builder cannot build; the message names the file and the rule."""


def build(directory: str | Path) -> list[Manifest]:
    """The manifests a kustomization directory renders to."""
    root = Path(directory)
    source = root / "kustomization.yaml"
    spec = yaml.safe_load(source.read_text()) or {}
    unknown = set(spec) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeError(f"{source}: unsupported keys {sorted(unknown)} (supported: {sorted(SUPPORTED_KEYS)})")
    manifests: list[Manifest] = []
    for entry in spec.get("resources", []):
        path = root / entry
        if path.is_dir():
            manifests += build(path)
        else:
            manifests += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    manifests = copy.deepcopy(manifests)
    if "namespace" in spec:
        for manifest in manifests:
            _set_namespace(manifest, spec["namespace"])
    for image in spec.get("images", []):
        for manifest in manifests:
            _set_image(manifest, image)
    for index, patch in enumerate(spec.get("patches", [])):
        where = f"{source}: patches[{index}]"
        targets = [m for m in manifests if _matches(m, patch.get("target", {}))]
        if not targets:
            raise KustomizeError(f"{where}: target {patch.get('target')} matches no resource")
        operations = yaml.safe_load(patch["patch"]) if "patch" in patch else None
        if not isinstance(operations, list):
            raise KustomizeError(f"{where}: only inline JSON 6902 patches (a list of operations) are supported")
        for manifest in targets:
            for operation in operations:
                apply_operation(manifest, operation, where)
    return manifests


def _set_namespace(manifest: Manifest, namespace: str) -> None:
    if manifest.get("kind") not in CLUSTER_SCOPED:
        manifest.setdefault("metadata", {})["namespace"] = namespace
    if manifest.get("kind") in {"RoleBinding", "ClusterRoleBinding"}:
        for subject in manifest.get("subjects", []):
            if subject.get("kind") == "ServiceAccount":
                subject["namespace"] = namespace


def _image_name(reference: str) -> str:
    name = reference.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def _set_image(node: Any, image: dict[str, str]) -> None:
    """Every `image:` field naming `image['name']` gets the new name, tag or digest."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str) and _image_name(value) == image["name"]:
                name = image.get("newName", image["name"])
                node[key] = (
                    f"{name}@{image['digest']}" if "digest" in image else f"{name}:{image.get('newTag', 'latest')}"
                )
            else:
                _set_image(value, image)
    elif isinstance(node, list):
        for item in node:
            _set_image(item, image)


def _matches(manifest: Manifest, target: dict[str, str]) -> bool:
    return all(
        (manifest.get("kind") if key == "kind" else manifest.get("metadata", {}).get(key)) == value
        for key, value in target.items()
    )


def _pointer(path: str, where: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"{where}: path {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def apply_operation(document: Manifest, operation: dict[str, Any], where: str) -> None:
    """One JSON 6902 add / replace / remove."""
    op = operation.get("op")
    parts = _pointer(operation.get("path", ""), where)
    parent: Any = document
    for part in parts[:-1]:
        try:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        except (KeyError, IndexError, ValueError) as exc:
            raise KustomizeError(f"{where}: path {operation['path']} does not exist") from exc
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, operation["value"])
        elif op == "replace":
            parent[index] = operation["value"]
        elif op == "remove":
            del parent[index]
        else:
            raise KustomizeError(f"{where}: unsupported op {op!r}")
        return
    if op in {"replace", "remove"} and last not in parent:
        raise KustomizeError(f"{where}: path {operation['path']} does not exist")
    if op in {"add", "replace"}:
        parent[last] = operation["value"]
    elif op == "remove":
        del parent[last]
    else:
        raise KustomizeError(f"{where}: unsupported op {op!r}")
