"""k8s/: every Envoy's mounted config validates with its own command line (`envoy --mode
validate`), fails closed over gRPC, reaches extauthz and every upstream, keeps its admin on
loopback, and names on each route a workload that has policies."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from extauthz.server.app import split_addr
from tests.support.deploy_files import envoy_validates
from tests.support.manifests import ENVOY_CONFIGS, ENVOYS, Container, Manifest, ids, mounted_files
from tests.support.pods import (
    endpoints,
    envoy_config,
    envoy_config_path,
    ext_authz,
    is_loopback,
    listeners,
    policies,
    reach,
    root_namespace,
    route_workload,
    routes,
    selecting,
    serve_args,
)


@pytest.mark.parametrize(("config_map", "key"), ENVOY_CONFIGS)
def test_embedded_envoy_config_validates(config_map: Manifest, key: str, tmp_path: Path) -> None:
    path = tmp_path / key
    path.write_text(config_map.body["data"][key])
    envoy_validates(["-c", str(path)])


@pytest.mark.parametrize("container", ENVOYS, ids=ids(ENVOYS))
def test_envoy_command_line_validates(container: Container, tmp_path: Path) -> None:
    # The container's own flags (--concurrency, --disable-hot-restart, ...), its config
    # written where Envoy can read it here.
    argv = [str(a) for a in [*container.spec.get("command", []), *container.spec["args"]]]
    assert argv[0] == "envoy", "run Envoy itself: the pod already sets the user"
    config = tmp_path / "envoy.yaml"
    config.write_text(yaml.safe_dump(envoy_config(container)))
    argv[argv.index("-c") + 1] = str(config)
    envoy_validates(argv[1:])


def test_every_embedded_envoy_config_is_run_by_an_envoy() -> None:
    run = {(m.name, key) for c in ENVOYS for m, key in [mounted_files(c)[envoy_config_path(c)]]}
    assert run == {(p.values[0].name, p.values[1]) for p in ENVOY_CONFIGS}


@pytest.mark.parametrize("container", ENVOYS, ids=ids(ENVOYS))
def test_envoy_fails_closed_over_grpc(container: Container) -> None:
    config = envoy_config(container)
    guarded = [listener for listener in listeners(config) if ext_authz(listener)]
    assert guarded, f"{container}: no listener asks extauthz"
    for listener in guarded:
        filter_config = ext_authz(listener) or {}
        assert filter_config["failure_mode_allow"] is False
        assert filter_config["grpc_service"]["envoy_grpc"]["cluster_name"] == "extauthz"
    [cluster] = [c for c in config["static_resources"]["clusters"] if c["name"] == "extauthz"]
    options = cluster["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http["explicit_http_config"], "gRPC needs HTTP/2"


@pytest.mark.parametrize("container", ENVOYS, ids=ids(ENVOYS))
def test_envoy_reaches_extauthz_on_its_grpc_port(container: Container) -> None:
    for host, port in endpoints(envoy_config(container))["extauthz"]:
        reached = reach(container, host, port)
        assert reached and all(c.is_extauthz for c in reached), f"{host}:{port} is not extauthz"
        for extauthz in reached:
            assert split_addr(serve_args(extauthz).grpc_addr)[1] == port


@pytest.mark.parametrize("container", ENVOYS, ids=ids(ENVOYS))
def test_envoy_clusters_reach_a_listener(container: Container) -> None:
    for cluster, addresses in endpoints(envoy_config(container)).items():
        for host, port in addresses:
            assert reach(container, host, port), (
                f"{container}: cluster {cluster}: nobody at {host}:{port}"
            )


@pytest.mark.parametrize("container", ENVOYS, ids=ids(ENVOYS))
def test_envoy_ports_are_its_listeners(container: Container) -> None:
    config = envoy_config(container)
    admin = config["admin"]["address"]["socket_address"]
    assert is_loopback(admin["address"]), "keep Envoy's admin interface on loopback"
    ports = {int(x["address"]["socket_address"]["port_value"]) for x in listeners(config)}
    declared = {int(p["containerPort"]) for p in container.spec["ports"]}
    assert declared == ports


@pytest.mark.parametrize("container", ENVOYS, ids=ids(ENVOYS))
def test_envoy_readiness_asks_the_admin_ready(container: Container) -> None:
    config = envoy_config(container)
    get = container.spec["readinessProbe"]["httpGet"]
    port = container.declared_port(get["port"])
    [listener] = [
        x for x in listeners(config) if x["address"]["socket_address"]["port_value"] == port
    ]
    assert ext_authz(listener) is None, "probes must not need a token"
    [route] = [r for _, r in routes(listener) if r["match"].get("path") == get["path"] == "/ready"]
    admin = config["admin"]["address"]["socket_address"]
    assert endpoints(config)[route["route"]["cluster"]] == [(admin["address"], admin["port_value"])]


@pytest.mark.parametrize("container", ENVOYS, ids=ids(ENVOYS))
def test_envoy_routes_name_workloads_with_policies(container: Container, tmp_path: Path) -> None:
    config = envoy_config(container)
    [extauthz, *_] = [
        c for host, port in endpoints(config)["extauthz"] for c in reach(container, host, port)
    ]
    guarded = [(h, r) for x in listeners(config) if ext_authz(x) for h, r in routes(x)]
    if len(extauthz.pod_mates) > 1:
        # A sidecar: every route is the pod's own workload (test_k8s_extauthz.py checks it).
        assert not any(route_workload(r) for _, r in guarded)
        return
    # A shared extauthz: every route names its workload, for at least two workloads.
    named = [(host, route, route_workload(route)) for host, route in guarded]
    assert all(workload for *_, workload in named), "name the workload on every route"
    assert len({workload for *_, workload in named}) >= 2
    loaded = policies(extauthz, tmp_path)
    for host, route, workload in named:
        assert workload and selecting(extauthz, loaded, workload), f"{host}: no policy"
        if workload.namespace == root_namespace(extauthz):
            continue  # the gateway's own identity, as Istio enforces its gateway's policies
        # An app's identity: the route's upstream is that app.
        for upstream_host, port in endpoints(config)[route["route"]["cluster"]]:
            for app in reach(container, upstream_host, port):
                assert app.namespace == workload.namespace
                assert workload.labels.items() <= app.labels.items(), f"{host}: not {app}'s labels"
