"""k8s/: every extauthz container runs the image as built (entrypoint, ports, user), with
`serve` flags and EXTAUTHZ_* variables the CLI knows, probes on its health endpoints, and
policies for the workloads it decides for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extauthz.config.workload import Workload, parse_labels
from extauthz.server.app import split_addr
from tests.support.deploy_files import (
    LISTENS_EVERYWHERE,
    env_name,
    exposed_ports,
    final,
    image_uid,
    serve_flags,
)
from tests.support.manifests import ENVOYS, EXTAUTHZ, SIDECARS, VERSION, Container, ids
from tests.support.pods import (
    default_workload,
    endpoints,
    env,
    envoy_config,
    ext_authz,
    listeners,
    listens,
    policies,
    reach,
    route_workload,
    routes,
    selecting,
    serve_args,
)

AUTHORIZATION_SERVICE = "envoy.service.auth.v3.Authorization"


# -- the image, the CLI -----------------------------------------------------------------------


def test_some_manifest_runs_extauthz_and_envoy() -> None:
    assert len(EXTAUTHZ) >= 2 and len(ENVOYS) >= 2
    assert all(c.image == f"extauthz:{VERSION}" for c in EXTAUTHZ)


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_extauthz_runs_the_image_entrypoint(container: Container) -> None:
    assert json.loads(final("ENTRYPOINT")[-1]) == ["extauthz"]
    assert "command" not in container.spec, "keep the image's ENTRYPOINT: pass `args`"
    assert serve_args(container).command == "serve"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_extauthz_flags_and_env_are_serve_flags(container: Container) -> None:
    flags = serve_flags()
    for arg in map(str, container.spec.get("args", [])):
        if arg.startswith("--"):
            assert arg.split("=")[0] in flags, f"{container}: `extauthz serve` has no {arg}"
    env_names = {env_name(flag) for flag in flags}
    for name in env(container):
        if name.startswith("EXTAUTHZ_"):
            assert name in env_names, f"{container}: {name} is no `extauthz serve` flag"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_extauthz_ports_are_the_images(container: Container) -> None:
    sockets = listens(container)
    declared = {int(p["containerPort"]) for p in container.spec.get("ports", [])}
    assert declared <= exposed_ports(), f"the image exposes {exposed_ports()}"
    assert set(sockets) <= exposed_ports(), "the addresses should keep the image's ports"
    for port in declared:
        assert sockets.get(port) in LISTENS_EVERYWHERE, f"{port} is declared but not listened on"
    http_host, http_port = split_addr(serve_args(container).http_addr)
    assert http_port in declared and http_host in LISTENS_EVERYWHERE, "kubelet probes need HTTP"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_extauthz_probes_ask_its_health_endpoints(container: Container) -> None:
    args = serve_args(container)
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


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_extauthz_runs_as_the_images_user(container: Container) -> None:
    assert container.spec["securityContext"]["runAsUser"] == image_uid()


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_extauthz_pod_is_scraped_on_its_metrics_port(container: Container) -> None:
    http_port = split_addr(serve_args(container).http_addr)[1]
    assert container.annotations.get("prometheus.io/scrape") == "true"
    assert container.annotations.get("prometheus.io/port") == str(http_port)
    assert container.annotations.get("prometheus.io/path") == "/metrics"


# -- which workload it protects ---------------------------------------------------------------


def _named_workloads(envoy: Container) -> set[Workload]:
    config = envoy_config(envoy)
    named = [r for x in listeners(config) if ext_authz(x) for _, r in routes(x)]
    return {workload for workload in map(route_workload, named) if workload}


def _served_workloads(container: Container) -> set[Workload]:
    """The workloads an extauthz decides for: its own (flags and environment), and those named
    by the routes of every Envoy that reaches it."""
    served = {default_workload(container)}
    for envoy in ENVOYS:
        extauthz = endpoints(envoy_config(envoy))["extauthz"]
        if any(container in reach(envoy, host, port) for host, port in extauthz):
            served |= _named_workloads(envoy)
    return served


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_extauthz_default_workload_has_policies(container: Container, tmp_path: Path) -> None:
    workload = default_workload(container)
    loaded = policies(container, tmp_path)
    assert selecting(container, loaded, workload), f"none selects {workload}"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_every_policy_selects_a_served_workload(container: Container, tmp_path: Path) -> None:
    # A selector typo leaves a policy that never applies: Istio would not say so either.
    served = _served_workloads(container)
    loaded = policies(container, tmp_path)
    used = {ref for workload in served for ref in selecting(container, loaded, workload)}
    unused = [p.meta.ref for p in loaded if p.meta.ref not in used]
    assert not unused, f"{unused} apply to none of {sorted(map(str, served))}"


@pytest.mark.parametrize("container", SIDECARS, ids=ids(SIDECARS))
def test_sidecar_extauthz_protects_its_own_pod(container: Container) -> None:
    variables = {var["name"]: var for var in container.spec.get("env", [])}
    namespace = variables.get("EXTAUTHZ_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {})
    assert namespace.get("fieldPath") == "metadata.namespace", "take it from the Downward API"
    labels = parse_labels(serve_args(container).labels)
    assert labels and labels.items() <= container.labels.items(), "labels not on the pod"
