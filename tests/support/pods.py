"""What the containers of k8s/ run: extauthz's command line and environment as `serve` reads
them, Envoy's mounted config, the sockets each listens on, whom a host:port reaches from a
container (a pod mate over loopback, or the pods behind a Service), and the Istio policies
an extauthz loads."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock

import pytest
import yaml

from extauthz.config.parse import load_config
from extauthz.config.workload import Workload, applies_to, parse_labels
from extauthz.server.app import split_addr
from tests.support.deploy_files import LISTENS_EVERYWHERE, parse_cli
from tests.support.manifests import (
    CONTAINERS,
    Container,
    Manifest,
    find,
    mounted_files,
    mounted_text,
    selects,
)

# <service>.<namespace>, found through the pod's DNS search path whatever the cluster domain;
# the full name (.svc.cluster.local) is accepted where something needs it.
SERVICE_HOST = re.compile(
    r"(?P<name>[a-z0-9-]+)\.(?P<namespace>[a-z0-9-]+)(?:\.svc(?:\.cluster\.local)?)?"
)


# -- extauthz's command line and environment --------------------------------------------------


def _downward_api(container: Container, source: dict[str, Any]) -> str:
    field_path = str(source.get("fieldRef", {}).get("fieldPath", ""))
    label = re.fullmatch(r"metadata\.labels\['(?P<key>[^']+)'\]", field_path)
    if field_path == "metadata.namespace":
        return container.namespace
    if label and label["key"] in container.labels:
        return container.labels[label["key"]]
    pytest.fail(f"{container}: cannot resolve env source {source}")


def env(container: Container) -> dict[str, str]:
    """The container's environment as the kubelet sets it, `$(VAR)` references expanded."""
    variables: dict[str, str] = {}
    for var in container.spec.get("env", []):
        if "valueFrom" in var:
            variables[var["name"]] = _downward_api(container, var["valueFrom"])
        else:
            expand = re.compile(r"\$\((\w+)\)")
            value = expand.sub(lambda m: variables.get(m[1], m[0]), str(var["value"]))
            variables[var["name"]] = value
    return variables


def serve_args(container: Container) -> argparse.Namespace:
    """What `extauthz serve` makes of the container's args and EXTAUTHZ_* environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EXTAUTHZ_")}
    argv = [str(a) for a in container.spec.get("args", [])]
    with mock.patch.dict(os.environ, {**clean, **env(container)}, clear=True):
        return parse_cli(argv, str(container))


def listens(container: Container) -> dict[int, str]:
    """Port -> address for every socket the container listens on."""
    if container.is_extauthz:
        args = serve_args(container)
        return {port: host for host, port in map(split_addr, (args.grpc_addr, args.http_addr))}
    if container.is_envoy:
        config = envoy_config(container)
        sockets = [config["admin"]["address"]["socket_address"]]
        sockets += [listener["address"]["socket_address"] for listener in listeners(config)]
        return {int(s["port_value"]): str(s["address"]) for s in sockets}
    return {int(p["containerPort"]): "0.0.0.0" for p in container.spec.get("ports", [])}


# -- Envoy configs ----------------------------------------------------------------------------


def envoy_config_path(container: Container) -> PurePosixPath:
    argv = [str(a) for a in [*container.spec.get("command", []), *container.spec.get("args", [])]]
    assert "-c" in argv, f"{container}: Envoy is not given a config with -c"
    return PurePosixPath(argv[argv.index("-c") + 1])


def envoy_config(container: Container) -> dict[str, Any]:
    return dict(yaml.safe_load(mounted_text(container, str(envoy_config_path(container)))))


def listeners(config: dict[str, Any]) -> list[dict[str, Any]]:
    return list(config["static_resources"]["listeners"])


def endpoints(config: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
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


def ext_authz(listener: dict[str, Any]) -> dict[str, Any] | None:
    names = {f["name"]: f for f in _http_manager(listener)["http_filters"]}
    found = names.get("envoy.filters.http.ext_authz")
    return dict(found["typed_config"]) if found else None


def routes(listener: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for host in _http_manager(listener)["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            yield host["name"], route


def route_workload(route: dict[str, Any]) -> Workload | None:
    per_route = route.get("typed_per_filter_config", {}).get("envoy.filters.http.ext_authz")
    if per_route is None:
        return None
    extensions = per_route["check_settings"]["context_extensions"]
    return Workload(extensions["namespace"], parse_labels(extensions["labels"]))


# -- who reaches whom -------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost")


def service_backends(service: Manifest, port: int) -> list[tuple[Container, int]]:
    """The containers (and their ports) a Service's port sends traffic to."""
    [target] = [p.get("targetPort", p["port"]) for p in service.spec["ports"] if p["port"] == port]
    return [
        (c, declared["containerPort"])
        for c in CONTAINERS
        if c.namespace == service.namespace and selects(service.spec["selector"], c.labels)
        for declared in c.spec.get("ports", [])
        if target in (declared["containerPort"], declared.get("name"))
    ]


def reach(client: Container, host: str, port: int) -> list[Container]:
    """The containers listening at host:port as seen from `client`: its pod mates over
    loopback, or the pods behind a Service by its cluster DNS name."""
    if is_loopback(host):
        return [c for c in client.pod_mates if port in listens(c)]
    name = SERVICE_HOST.fullmatch(host)
    assert name, f"{client}: {host} is neither loopback nor <service>.<namespace>"
    service = find("Service", name["namespace"], name["name"])
    assert service, f"{client}: no Service {name['namespace']}/{name['name']} for {host}"
    ports = [p["port"] for p in service.spec["ports"]]
    assert port in ports, f"{client}: Service {service.name} has no port {port} ({ports})"
    backends = service_backends(service, port)
    for backend, backend_port in backends:
        address = listens(backend).get(backend_port)
        assert address in LISTENS_EVERYWHERE, (
            f"{backend} does not listen on {backend_port} (pod IP)"
        )
    return [backend for backend, _ in backends]


# -- the policies an extauthz loads -----------------------------------------------------------


def policy_sources(container: Container) -> dict[PurePosixPath, tuple[Manifest, str]]:
    """The mounted ConfigMap files that extauthz's --config paths (files or directories) read."""
    sources = {}
    for config in map(PurePosixPath, serve_args(container).config):
        inside = {
            path: source
            for path, source in mounted_files(container).items()
            if path == config or config in path.parents
        }
        assert inside, f"{container}: nothing is mounted at --config {config}"
        sources.update(inside)
    return sources


def policy_files(container: Container) -> dict[str, str]:
    """File name -> text of the Istio YAML that extauthz reads."""
    return {
        path.name: str(config_map.body["data"][key])
        for path, (config_map, key) in policy_sources(container).items()
    }


def policies(container: Container, tmp_path: Path) -> list[Any]:
    """The RequestAuthentications and AuthorizationPolicies extauthz loads, as it parses them."""
    for name, text in policy_files(container).items():
        (tmp_path / name).write_text(text)
    config = load_config([tmp_path])
    return [*config.request_authentications, *config.authorization_policies]


def default_workload(container: Container) -> Workload:
    args = serve_args(container)
    return Workload(args.namespace, parse_labels(args.labels))


def root_namespace(container: Container) -> str:
    return str(serve_args(container).root_namespace)


def selecting(container: Container, policies: list[Any], workload: Workload) -> list[str]:
    """The policies of `container` (an extauthz) that apply to `workload`, by Istio's rules."""
    root = root_namespace(container)
    return [p.meta.ref for p in policies if applies_to(p, workload, root)]
