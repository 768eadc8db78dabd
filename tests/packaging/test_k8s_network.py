"""k8s/: the NetworkPolicies. Each selects pods that exist and ports they declare; extauthz's
Check port is reached only by gateways (`extauthz.io/client`) or, in a sidecar pod, only over
loopback; admin and metrics ports only by monitoring; the shared demo's apps only by the
gateway."""

from __future__ import annotations

from typing import Any

import pytest

from extauthz.server.app import split_addr
from tests.support.manifests import (
    CONTAINERS,
    EXTAUTHZ,
    SIDECARS,
    Container,
    Manifest,
    ids,
    manifest_params,
    of_kind,
    selects,
)
from tests.support.pods import is_loopback, serve_args

MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}
CLIENT_LABEL = {"extauthz.io/client": "true"}


def _selected(policy: Manifest) -> list[Container]:
    selector = policy.spec["podSelector"]["matchLabels"]
    return [
        c for c in CONTAINERS if c.namespace == policy.namespace and selects(selector, c.labels)
    ]


def _port_number(pod: list[Container], ref: int | str) -> int:
    [number] = {c.declared_port(ref) for c in pod if ref in _port_refs(c)}
    return number


def _port_refs(container: Container) -> set[int | str]:
    ports = container.spec.get("ports", [])
    return {p["containerPort"] for p in ports} | {p["name"] for p in ports if "name" in p}


def _rules_for(policies: list[Manifest], pod: list[Container], port: int) -> list[Any]:
    """The `from` lists of every ingress rule that admits `port` (None: from anywhere)."""
    return [
        rule.get("from")
        for policy in policies
        for rule in policy.spec.get("ingress", [])
        if any(_port_number(pod, p["port"]) == port for p in rule.get("ports", []))
    ]


def _policies_of(container: Container) -> list[Manifest]:
    return [p for p in of_kind("NetworkPolicy") if container in _selected(p)]


@pytest.mark.parametrize("policy", manifest_params("NetworkPolicy"))
def test_network_policy_selects_pods_and_their_ports(policy: Manifest) -> None:
    pods = _selected(policy)
    assert pods, f"{policy} selects no pod"
    assert policy.spec["policyTypes"] == ["Ingress"], "egress stays open (jwksUri fetches)"
    for rule in policy.spec["ingress"]:
        assert rule.get("ports"), f"{policy}: name the ports each rule opens"
        for port in rule["ports"]:
            for workload in {c.workload.name for c in pods}:
                pod = [c for c in pods if c.workload.name == workload]
                assert _port_number(pod, port["port"]), f"{policy}: {workload} has no {port}"


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_check_port_only_from_gateways(container: Container) -> None:
    host, port = split_addr(serve_args(container).grpc_addr)
    if is_loopback(host):
        return  # a sidecar: only its pod mates (its Envoy) reach it
    policies = _policies_of(container)
    assert policies, f"{container}: no NetworkPolicy guards the Check port"
    for sources in _rules_for(policies, container.pod_mates, port):
        assert sources, "the Check port open to every pod"
        for source in sources:
            same_namespace = "namespaceSelector" not in source
            labels = source["podSelector"]["matchLabels"]
            assert labels == CLIENT_LABEL or not same_namespace, f"{container}: {source}"
    gateways = [c for c in CONTAINERS if c.namespace == container.namespace and c.is_envoy]
    assert gateways and all(CLIENT_LABEL.items() <= g.labels.items() for g in gateways)


@pytest.mark.parametrize("container", EXTAUTHZ, ids=ids(EXTAUTHZ))
def test_metrics_port_only_from_monitoring(container: Container) -> None:
    port = split_addr(serve_args(container).http_addr)[1]
    sources = _rules_for(_policies_of(container), container.pod_mates, port)
    assert sources, f"{container}: metrics port unreachable or unguarded"
    for from_list in sources:
        assert from_list, "the metrics port open to every pod"
        for source in from_list:
            assert source["namespaceSelector"]["matchLabels"] == MONITORING
            assert source["podSelector"]["matchLabels"] == PROMETHEUS


@pytest.mark.parametrize("container", SIDECARS, ids=ids(SIDECARS))
def test_sidecar_pod_takes_traffic_only_through_envoy(container: Container) -> None:
    policies = _policies_of(container)
    assert policies
    open_ports = {
        _port_number(container.pod_mates, p["port"])
        for policy in policies
        for rule in policy.spec["ingress"]
        if not rule.get("from")
        for p in rule["ports"]
    }
    [envoy] = [c for c in container.pod_mates if c.is_envoy]
    assert open_ports == {envoy.declared_port("envoy-http")}
    app_ports = {
        p["containerPort"]
        for c in container.pod_mates
        if not (c.is_envoy or c.is_extauthz)
        for p in c.spec.get("ports", [])
    }
    assert not [p for p in app_ports if _rules_for(policies, container.pod_mates, p)]


def test_shared_apps_accept_only_the_gateway() -> None:
    gateways = [c for c in CONTAINERS if c.is_envoy and len(c.pod_mates) == 1]
    assert gateways
    [gateway] = gateways
    apps = [p for p in of_kind("NetworkPolicy") if p.namespace in ("bar", "bookinfo")]
    assert {p.name for p in apps} >= {"httpbin", "productpage"}
    for policy in apps:
        for rule in policy.spec["ingress"]:
            for source in rule["from"]:
                labels = source["podSelector"]["matchLabels"]
                if "namespaceSelector" in source:
                    namespace = source["namespaceSelector"]["matchLabels"]
                    assert namespace == {"kubernetes.io/metadata.name": gateway.namespace}
                    assert selects(labels, gateway.labels), f"{policy}: {source}"
                else:  # inside the app's namespace: details from productpage
                    assert policy.name == "details" and labels == {"app": "productpage"}
