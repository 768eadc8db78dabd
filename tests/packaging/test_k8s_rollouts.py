"""k8s/: rollouts without 403s. extauthz keeps answering longer than a leaving pod takes to
drop out of endpoints and DNS (an exec preStop: no alpha field), inside its grace period; the
Envoys' `extauthz` clusters retry connection failures, keep HTTP/2 connections alive, size
their circuit breakers for the Check timeout and, with several hosts, check health and eject
outliers; in a sidecar pod extauthz starts before Envoy, and both before the app."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.manifests import ENVOYS, EXTAUTHZ, SIDECARS, Container, ids
from tests.support.pods import endpoints, envoy_config, ext_authz, is_loopback, listeners

# Endpoints (1-2 s) + CoreDNS's TTL (5 s) + Envoy's re-resolution (5 s), with a margin.
PROPAGATION_SECONDS = 12
EXTAUTHZ_DRAIN_SECONDS = 5  # extauthz's own SIGTERM drain (Settings.drain_seconds)


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def _extauthz_cluster(config: dict[str, Any]) -> dict[str, Any]:
    [cluster] = [c for c in config["static_resources"]["clusters"] if c["name"] == "extauthz"]
    return dict(cluster)


def _prestop_sleep(container: Container) -> int:
    command = container.spec["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", f"{container}: {command}"
    return int(command[1])


SHARED = [c for c in EXTAUTHZ if c not in SIDECARS]


@pytest.mark.parametrize("container", SHARED, ids=ids(SHARED))
def test_shared_extauthz_outlasts_propagation(container: Container) -> None:
    pause = _prestop_sleep(container)
    assert pause > PROPAGATION_SECONDS
    grace = container.pod["terminationGracePeriodSeconds"]
    assert grace >= pause + EXTAUTHZ_DRAIN_SECONDS + 5


@pytest.mark.parametrize("container", ENVOYS, ids=ids(ENVOYS))
def test_check_is_retried_on_connection_failures(container: Container) -> None:
    config = envoy_config(container)
    for listener in listeners(config):
        filter_config = ext_authz(listener)
        if not filter_config:
            continue
        service = filter_config["grpc_service"]
        retry = service["retry_policy"]
        assert "connect-failure" in retry["retry_on"] and retry["num_retries"] >= 1
        assert _seconds(retry["retry_back_off"]["max_interval"]) < _seconds(service["timeout"])


@pytest.mark.parametrize("container", ENVOYS, ids=ids(ENVOYS))
def test_extauthz_cluster_keeps_connections_and_bounds_requests(container: Container) -> None:
    config = envoy_config(container)
    cluster = _extauthz_cluster(config)
    http = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]["explicit_http_config"]["http2_protocol_options"]
    assert _seconds(http["connection_keepalive"]["interval"]) <= 30
    [thresholds] = cluster["circuit_breakers"]["thresholds"]
    # Little's law at the Check timeout: at least 1000 Checks/s that all take the full 1 s.
    assert thresholds["max_requests"] >= 1000
    assert _seconds(cluster["connect_timeout"]) < 1
    if all(is_loopback(host) for host, _ in endpoints(config)["extauthz"]):
        return  # one loopback host: nothing to eject or to health-check instead of
    assert cluster["outlier_detection"]["max_ejection_percent"] <= 50
    [check] = cluster["health_checks"]
    assert check["grpc_health_check"]["service_name"] == "envoy.service.auth.v3.Authorization"
    assert "dns_refresh_rate" not in cluster, "deprecated: the DNS cluster extension has it"


@pytest.mark.parametrize("container", SIDECARS, ids=ids(SIDECARS))
def test_sidecars_start_in_order_and_stop_after_the_app(container: Container) -> None:
    init = container.pod["initContainers"]
    names = [c["name"] for c in init if c.get("restartPolicy") == "Always"]
    assert names == ["extauthz", "envoy"], "extauthz first: Envoy never runs without it"
    for spec in init:
        assert "startupProbe" in spec, f"{spec['name']}: the next one waits for it"
    assert container.spec["name"] in names
    assert not {c["name"] for c in container.pod["containers"]} & set(names)
