"""k8s/ as objects: every manifest file read once, the containers of their pod templates, the
ConfigMap files those containers mount, and pytest parameters over them. What the containers
run and reach is in tests/support/pods.py."""

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
# are checked by hand (test_k8s_services.py). They stay out of the patterns' own kustomizations.
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor")}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
PATTERNS = [K8S / "sidecar", K8S / "shared"]
# Third-party sample apps keep their images' defaults (some run as root on port 80); every
# other container, ours (extauthz), Envoy and the helpers, is locked down.
SAMPLE_APP_IMAGES = ("docker.io/kennethreitz/httpbin", "docker.io/istio/examples-bookinfo-")


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


MANIFEST_FILES = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@functools.cache
def manifests_in(path: Path) -> tuple[Manifest, ...]:
    return tuple(Manifest(path, doc) for doc in documents(path))


MANIFESTS = [m for path in MANIFEST_FILES for m in manifests_in(path)]


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
        return [Container(self.workload, spec) for spec in self.pod["containers"]]

    def declared_port(self, ref: int | str) -> int:
        """A probe's or Service's port, by number or by the name of a containerPort."""
        for port in self.spec.get("ports", []):
            if ref in (port["containerPort"], port.get("name")):
                return int(port["containerPort"])
        pytest.fail(f"{self}: no containerPort {ref!r}")

    def __str__(self) -> str:
        return f"{self.namespace}/{self.workload.name}/{self.spec['name']}"


CONTAINERS = [
    Container(m, spec)
    for m in MANIFESTS
    if m.kind in POD_KINDS
    for spec in m.spec["template"]["spec"]["containers"]
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
