"""k8s/: Services reach declared container ports, workloads select their own pods, the shared
extauthz is autoscaled on CPU behind a disruption budget, and the ServiceMonitor (a custom
resource, checked by hand) scrapes extauthz's metrics port."""

from __future__ import annotations

import pytest

from extauthz.server.app import split_addr
from tests.support.manifests import (
    EXTAUTHZ,
    MANIFESTS,
    POD_KINDS,
    Manifest,
    find,
    manifest_params,
    of_kind,
    selects,
)
from tests.support.pods import serve_args, service_backends


@pytest.mark.parametrize("service", manifest_params("Service"))
def test_service_ports_reach_declared_container_ports(service: Manifest) -> None:
    pods = [
        m
        for m in MANIFESTS
        if m.kind in POD_KINDS and m.namespace == service.namespace
        if selects(service.spec["selector"], m.spec["template"]["metadata"]["labels"])
    ]
    assert pods, f"{service} selects no pod"
    for port in service.spec["ports"]:
        assert service_backends(service, port["port"]), f"{service}: port {port} reaches nothing"


@pytest.mark.parametrize(
    "workload", [pytest.param(m, id=str(m)) for m in MANIFESTS if m.kind in POD_KINDS]
)
def test_workload_selector_matches_its_pods(workload: Manifest) -> None:
    selector = workload.spec["selector"]["matchLabels"]
    assert selects(selector, workload.spec["template"]["metadata"]["labels"])
    pod = workload.spec["template"]["spec"]
    names = [p["name"] for c in pod["containers"] for p in c.get("ports", []) if "name" in p]
    assert len(names) == len(set(names)), f"port names repeat in the pod: {names}"
    volumes = {v["name"] for v in pod.get("volumes", [])}
    for container in pod["containers"]:
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{container['name']}: no volume {mount['name']}"
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            assert find("ConfigMap", workload.namespace, volume["configMap"]["name"])


@pytest.mark.parametrize("autoscaler", manifest_params("HorizontalPodAutoscaler"))
def test_autoscaler_scales_extauthz_on_cpu(autoscaler: Manifest) -> None:
    spec = autoscaler.spec
    target = find(
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
    scaled = {m.spec["scaleTargetRef"]["name"] for m in of_kind("HorizontalPodAutoscaler")}
    budgets = {m.name for m in of_kind("PodDisruptionBudget")}
    assert shared and shared <= scaled and shared <= budgets


@pytest.mark.parametrize("budget", manifest_params("PodDisruptionBudget"))
def test_disruption_budget_leaves_pods_running(budget: Manifest) -> None:
    [workload] = [
        m
        for m in MANIFESTS
        if m.kind in POD_KINDS and m.namespace == budget.namespace
        if selects(budget.spec["selector"]["matchLabels"], m.spec["template"]["metadata"]["labels"])
    ]
    autoscalers = [
        m.spec["minReplicas"]
        for m in of_kind("HorizontalPodAutoscaler")
        if (m.namespace, m.spec["scaleTargetRef"]["name"]) == (workload.namespace, workload.name)
    ]
    replicas = min(autoscalers) if autoscalers else workload.spec["replicas"]
    assert 0 < budget.spec["maxUnavailable"] < replicas


@pytest.mark.parametrize("monitor", manifest_params("ServiceMonitor"))
def test_service_monitor_scrapes_extauthz_metrics(monitor: Manifest) -> None:
    spec = monitor.spec
    namespaces = spec.get("namespaceSelector", {}).get("matchNames", [monitor.namespace])
    services = [
        s
        for s in of_kind("Service")
        if s.namespace in namespaces
        and selects(spec["selector"]["matchLabels"], s.body["metadata"].get("labels", {}))
    ]
    assert services, f"{monitor} selects no Service"
    for endpoint in spec["endpoints"]:
        assert endpoint["path"] == "/metrics"
        for service in services:
            [port] = [p["port"] for p in service.spec["ports"] if p["name"] == endpoint["port"]]
            backends = service_backends(service, port)
            assert backends and all(c.is_extauthz for c, _ in backends)
            for extauthz, container_port in backends:
                assert split_addr(serve_args(extauthz).http_addr)[1] == container_port
