"""k8s/ as objects: every manifest file read once, the containers of their pod templates, the
ConfigMap files those containers mount, and pytest parameters over them. What the containers
run and reach is in tests/support/pods.py.

A kustomize Component (k8s/base/sidecar) is applied here as kustomize applies it, for the
kustomizations that list it: its resources take the kustomization's `namespace:`, and its
strategic-merge patch is merged into the Deployments its target's labelSelector picks.
test_k8s_kustomize.py checks the result against `kubectl kustomize` where kubectl is
installed."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.support.deploy_files import REPO

K8S = REPO / "k8s"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

# Custom resources have no schema in kubernetes-validate: these, and only these, skip it and
# are checked by hand (test_k8s_services.py, test_k8s_integrations.py, test_monitoring_rules.py).
# They stay out of the bases' and demos' own kustomizations.
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("install.istio.io/v1alpha1", "IstioOperator"),
    ("gateway.envoyproxy.io/v1alpha1", "SecurityPolicy"),
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"),
}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
# Production bases (no demo, no namespace objects, no sample keys) and the demos on them.
BASES = [K8S / "base" / "shared", K8S / "base" / "sidecar"]
PATTERNS = [K8S / "demo" / "sidecar", K8S / "demo" / "shared"]
INTEGRATIONS = [K8S / "integrations" / "istio", K8S / "integrations" / "envoy-gateway"]
# Third-party sample apps keep their images' defaults (bookinfo runs as root); every other
# container, ours (extauthz), Envoy, httpbin and the helpers, is locked down.
SAMPLE_APP_IMAGES = ("docker.io/istio/examples-bookinfo-",)


def rel(path: Path) -> str:
    return path.relative_to(K8S).as_posix() or "."


# -- the manifests ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    file: Path
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def api(self) -> tuple[str, str]:
        return str(self.body["apiVersion"]), self.kind

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"].get("namespace", ""))

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.body.get("spec") or {})

    def __str__(self) -> str:
        return f"{rel(self.file)}:{self.kind}/{self.name}"


def kustomization(directory: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((directory / "kustomization.yaml").read_text()))


KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
COMPONENTS = [d for d in KUSTOMIZATIONS if kustomization(d)["kind"] == "Component"]
# Patch files are not objects of their own: they are merged into their targets.
PATCH_FILES = {
    (d / patch["path"]).resolve()
    for d in KUSTOMIZATIONS
    for patch in kustomization(d).get("patches", [])
    if "path" in patch
}
MANIFEST_FILES = sorted(
    p
    for p in K8S.rglob("*.yaml")
    if p.name != "kustomization.yaml" and p.resolve() not in PATCH_FILES
)


def documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@functools.cache
def manifests_in(path: Path) -> tuple[Manifest, ...]:
    return tuple(Manifest(path, doc) for doc in documents(path))


def is_in_component(path: Path) -> bool:
    return any(path.resolve().is_relative_to(c.resolve()) for c in COMPONENTS)


def strategic_merge(base: Any, patch: Any) -> Any:
    """kustomize's strategic merge as far as pod templates need it: maps merge key by key,
    lists of named maps (containers, volumes, env, ports, mounts) merge by name, other lists
    and values are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    named = [x for x in [*base, *patch] if isinstance(x, dict)] if isinstance(base, list) else []
    if isinstance(patch, list) and named and all("name" in x for x in named):
        merged_list = list(base)
        for item in patch:
            names = [x["name"] for x in merged_list]
            if item["name"] in names:
                at = names.index(item["name"])
                merged_list[at] = strategic_merge(merged_list[at], item)
            else:
                merged_list.append(item)
        return merged_list
    return patch


def _label_selector(selector: str) -> dict[str, str]:
    return dict(term.split("=", 1) for term in selector.split(","))


def _resource_paths(directory: Path) -> list[Path]:
    paths: list[Path] = []
    for entry in kustomization(directory).get("resources", []):
        path = (directory / entry).resolve()
        paths.extend(_resource_paths(path) if path.is_dir() else [path])
    return paths


def _apply_components(directory: Path, raw: dict[Path, list[Manifest]]) -> list[Manifest]:
    """The components `directory` lists, applied to its resources (in `raw`, changed in place):
    returns the components' own resources, in the kustomization's namespace."""
    namespace = kustomization(directory).get("namespace", "")
    added = []
    for entry in kustomization(directory).get("components", []):
        component = (directory / entry).resolve()
        for path in _resource_paths(component):
            for m in manifests_in(path):
                body = {**m.body, "metadata": {**m.body["metadata"], "namespace": namespace}}
                added.append(Manifest(m.file, body))
        targets = [path for path in _resource_paths(directory) if path in raw]
        for patch in kustomization(component).get("patches", []):
            [patch_body] = documents(component / patch["path"])
            wanted = _label_selector(patch["target"]["labelSelector"])
            for path in targets:
                raw[path] = [
                    _patched(m, patch_body, patch["target"]["kind"], wanted) for m in raw[path]
                ]
    return added


def _patched(m: Manifest, patch: dict[str, Any], kind: str, wanted: dict[str, str]) -> Manifest:
    labels = m.body["metadata"].get("labels", {})
    if m.kind != kind or not wanted.items() <= labels.items():
        return m
    patch = {**patch, "metadata": {}}  # the target keeps its own name and namespace
    return Manifest(m.file, strategic_merge(m.body, patch))


def _all_manifests() -> list[Manifest]:
    raw = {
        path.resolve(): list(manifests_in(path))
        for path in MANIFEST_FILES
        if not is_in_component(path)
    }
    users = [d for d in KUSTOMIZATIONS if kustomization(d).get("components")]
    added = [m for d in users for m in _apply_components(d, raw)]
    return [m for path in MANIFEST_FILES for m in raw.get(path.resolve(), [])] + added


MANIFESTS = _all_manifests()


def closure(directory: Path) -> list[Manifest]:
    """The objects `kubectl apply -k directory` applies (their (kind, namespace, name) and
    content as the model above has them)."""
    found: list[Manifest] = []
    config = kustomization(directory)
    for entry in config.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            found.extend(closure(path))
        else:
            found.extend(m for m in MANIFESTS if m.file.resolve() == path)
    namespace = config.get("namespace", "")
    for entry in config.get("components", []):
        component = (directory / entry).resolve()
        files = set(_resource_paths(component))
        found.extend(m for m in MANIFESTS if m.file.resolve() in files and m.namespace == namespace)
    return found


def of_kind(kind: str) -> list[Manifest]:
    return [m for m in MANIFESTS if m.kind == kind]


def find(kind: str, namespace: str, name: str) -> Manifest | None:
    found = [m for m in of_kind(kind) if (m.namespace, m.name) == (namespace, name)]
    return found[0] if found else None


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


# -- containers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Container:
    workload: Manifest
    spec: dict[str, Any]

    @property
    def pod(self) -> dict[str, Any]:
        return dict(self.workload.spec["template"]["spec"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.workload.spec["template"]["metadata"].get("labels", {}))

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.workload.spec["template"]["metadata"].get("annotations", {}))

    @property
    def namespace(self) -> str:
        return self.workload.namespace

    @property
    def image(self) -> str:
        return str(self.spec["image"])

    @property
    def is_extauthz(self) -> bool:
        return self.image.rsplit("/", 1)[-1].split(":")[0] == "extauthz"

    @property
    def is_envoy(self) -> bool:
        return self.image.split(":")[0].endswith("envoyproxy/envoy")

    @property
    def pod_mates(self) -> list[Container]:
        return [Container(self.workload, spec) for spec in pod_containers(self.pod)]

    def declared_port(self, ref: int | str) -> int:
        """A probe's or Service's port, by number or by the name of a containerPort."""
        for port in self.spec.get("ports", []):
            if ref in (port["containerPort"], port.get("name")):
                return int(port["containerPort"])
        pytest.fail(f"{self}: no containerPort {ref!r}")

    def __str__(self) -> str:
        return f"{self.namespace}/{self.workload.name}/{self.spec['name']}"


def pod_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers that run for the pod's life: native sidecars (initContainers with
    restartPolicy Always, started first, in order) and the containers."""
    sidecars = [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    return [*sidecars, *pod["containers"]]


CONTAINERS = [
    Container(m, spec)
    for m in MANIFESTS
    if m.kind in POD_KINDS
    for spec in pod_containers(m.spec["template"]["spec"])
]
EXTAUTHZ = [c for c in CONTAINERS if c.is_extauthz]
SIDECARS = [c for c in EXTAUTHZ if len(c.pod_mates) > 1]
ENVOYS = [c for c in CONTAINERS if c.is_envoy]
HARDENED = [c for c in CONTAINERS if not c.image.startswith(SAMPLE_APP_IMAGES)]


def mounted_files(container: Container) -> dict[PurePosixPath, tuple[Manifest, str]]:
    """Path in the container -> (ConfigMap, key) for every ConfigMap file it mounts."""
    volumes = {v["name"]: v for v in container.pod.get("volumes", [])}
    files = {}
    for mount in container.spec.get("volumeMounts", []):
        source = volumes[mount["name"]].get("configMap")
        config_map = source and find("ConfigMap", container.namespace, source["name"])
        if not config_map:
            continue
        keys = source.get("items") or [{"key": k, "path": k} for k in config_map.body["data"]]
        root = PurePosixPath(mount["mountPath"])
        for item in keys:
            if "subPath" not in mount:
                files[root / item["path"]] = (config_map, item["key"])
            elif mount["subPath"] == item["path"]:
                files[root] = (config_map, item["key"])
    return files


def mounted_text(container: Container, path: str) -> str:
    files = mounted_files(container)
    if PurePosixPath(path) not in files:
        pytest.fail(f"{container}: no ConfigMap file is mounted at {path}")
    config_map, key = files[PurePosixPath(path)]
    return str(config_map.body["data"][key])


# -- parametrization --------------------------------------------------------------------------


def _yaml_entries() -> Iterator[tuple[Manifest, str, list[Any]]]:
    """(ConfigMap, key, YAML documents) for every YAML file a ConfigMap carries."""
    for config_map in of_kind("ConfigMap"):
        for key, text in config_map.body.get("data", {}).items():
            if key.endswith((".yaml", ".yml")):
                yield config_map, key, [d for d in yaml.safe_load_all(text) if d]


def _is_envoy_config(docs: list[Any]) -> bool:
    return len(docs) == 1 and "static_resources" in docs[0]


def _is_istio_yaml(docs: list[Any]) -> bool:
    return any(str(d.get("apiVersion", "")).startswith("security.istio.io/") for d in docs)


ENVOY_CONFIGS = [
    pytest.param(m, key, id=f"{m}:{key}")
    for m, key, docs in _yaml_entries()
    if _is_envoy_config(docs)
]
ISTIO_CONFIGS = [
    pytest.param(m, key, id=f"{m}:{key}")
    for m, key, docs in _yaml_entries()
    if _is_istio_yaml(docs)
]


def ids(items: list[Any]) -> list[str]:
    return [str(item) for item in items]


def manifest_params(kind: str) -> list[Any]:
    return [pytest.param(m, id=str(m)) for m in of_kind(kind)]


def dir_params(dirs: list[Path]) -> list[Any]:
    return [pytest.param(d, id=rel(d)) for d in dirs]
