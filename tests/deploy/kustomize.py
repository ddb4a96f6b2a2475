"""The subset of Kustomize that ``deploy/kubernetes`` uses, to render its overlays in tests.

Kustomize itself ships inside kubectl, which is not a Python package; the overlays are kept to
``resources`` (files and directories), ``namespace``, ``patches`` (strategic-merge patch files,
each naming one existing resource) and ``images``, which this module applies the way Kustomize
does. Any other field of a kustomization.yaml is refused, so an overlay cannot use something these
tests would silently ignore; where ``kubectl`` is installed, a test compares this rendering with
``kubectl kustomize``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN_FIELDS = {"apiVersion", "kind", "namespace", "resources", "patches", "images"}

#: Kinds without a namespace (among those a MAOS deployment could contain).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
}

#: List fields merged element by element (patchMergeKey of the Kubernetes API); others are replaced.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}


class KustomizeError(AssertionError):
    """A kustomization this subset does not render (an unknown field, a patch that names nothing)."""


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``path``."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def key_of(resource: dict[str, Any]) -> tuple[str, str, str]:
    """``(group, kind, name)``: what a patch names (the API version within a group does not matter)."""
    group = resource["apiVersion"].rpartition("/")[0]
    return group, resource["kind"], resource["metadata"]["name"]


def merge(target: Any, patch: Any, field: str = "") -> Any:
    """A strategic merge of ``patch`` into ``target``: maps merge, null deletes, keyed lists merge by key."""
    if isinstance(patch, dict) and isinstance(target, dict):
        out = dict(target)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and isinstance(target, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        out = [copy.deepcopy(item) for item in target]
        added = []
        for item in patch:
            match = [i for i, old in enumerate(out) if old.get(key) == item.get(key)]
            if match:
                out[match[0]] = merge(out[match[0]], item, "")
            else:
                added.append(copy.deepcopy(item))
        return added + out  # Kustomize puts the patch's new elements first
    return copy.deepcopy(patch)


def _pod_specs(resource: dict[str, Any]) -> list[dict[str, Any]]:
    spec = resource.get("spec", {})
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    return [template["spec"]] if template else []


def _set_images(resources: list[dict[str, Any]], images: list[dict[str, Any]]) -> None:
    for resource in resources:
        for pod in _pod_specs(resource):
            for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
                name, _, tag = container["image"].partition(":")
                for image in images:
                    if image["name"] == name:
                        container["image"] = (
                            f"{image.get('newName', name)}:{image.get('newTag', tag)}".rstrip(":")
                        )


def render(directory: Path) -> list[dict[str, Any]]:
    """The resources ``kubectl kustomize DIRECTORY`` would print, as parsed documents."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(
            f"{directory}/kustomization.yaml: {sorted(unknown)} is beyond what the tests render"
        )
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources += render(path) if path.is_dir() else load_documents(path)
    by_key = {key_of(r): i for i, r in enumerate(resources)}
    if len(by_key) != len(resources):
        raise KustomizeError(f"{directory}: two resources with the same kind and name")
    for entry in kustomization.get("patches", []):
        if set(entry) != {"path"}:
            raise KustomizeError(
                f"{directory}: patches other than a path to a strategic-merge patch: {entry}"
            )
        for patch in load_documents(directory / entry["path"]):
            if key_of(patch) not in by_key:
                raise KustomizeError(f"{directory}/{entry['path']}: {key_of(patch)} patches no resource")
            index = by_key[key_of(patch)]
            resources[index] = merge(resources[index], patch)
    _set_images(resources, kustomization.get("images", []))
    namespace = kustomization.get("namespace")
    if namespace:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = namespace
    return resources
