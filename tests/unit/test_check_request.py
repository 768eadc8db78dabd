"""`extauthz check` builds the CheckRequest Envoy would send (commands/check.check_request)
and converts it with envoy_api.to_attributes, as `serve` does."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from extauthz.authn.key_store import KeyStore
from extauthz.commands.check import check_request, request_attributes
from extauthz.config.workload import Workload, parse_labels
from extauthz.decision import decide
from extauthz.server.envoy_api import to_attributes
from extauthz.server.grpc_service import AuthorizationService
from extauthz.server.logs import DecisionLogger
from extauthz.server.metrics import Metrics
from extauthz.snapshot.store import ConfigStore


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        pytest.param({}, {"method": "GET", "host": "localhost", "path": "/p", "query": "q=1"}, id="defaults"),
        pytest.param({"host": "api.test", "headers": [("host", "h.test")]}, {"host": "api.test"}, id="host-flag-wins"),
        pytest.param({"headers": [("host", "h.test")]}, {"host": "h.test"}, id="host-header-becomes-authority"),
        pytest.param({"headers": [(":authority", "a.test")]}, {"host": "a.test"}, id="authority-header"),
        pytest.param({"method": "POST"}, {"method": "POST"}, id="method"),
        pytest.param({"source_ip": "10.1.2.3"}, {"source_ip": "10.1.2.3", "remote_ip": "10.1.2.3"}, id="remote-ip-is-the-peer-without-xff"),
        # Measured against Envoy 1.40: without trusted hops, x-forwarded-for is not the client.
        pytest.param({"source_ip": "10.1.2.3", "headers": [("x-forwarded-for", "192.0.2.1, 192.0.2.7")]}, {"remote_ip": "10.1.2.3"}, id="xff-is-not-trusted-without-hops"),
        pytest.param({"source_ip": "10.1.2.3", "remote_ip": "192.0.2.9"}, {"source_ip": "10.1.2.3", "remote_ip": "192.0.2.9"}, id="remote-ip-flag"),
        pytest.param({"port": 8080}, {"destination_port": 8080}, id="port"),
        pytest.param({"principal": "spiffe://td/ns/a/sa/b"}, {"source_principal": "spiffe://td/ns/a/sa/b"}, id="principal"),
    ],
)  # fmt: skip
def test_flags_become_attributes(flags: dict[str, Any], expected: dict[str, Any]) -> None:
    attrs = request_attributes("/p?q=1", **flags)
    assert {name: getattr(attrs, name) for name in expected} == expected


def test_headers_as_envoy_sends_them() -> None:
    attrs = request_attributes(
        "/p?q=1", host="api.test", token="t.o.k", headers=[("x-a", "1"), ("x-a", "2")]
    )
    assert dict(attrs.headers) == {
        "x-a": "1,2", "authorization": "Bearer t.o.k", ":authority": "api.test",
        ":method": "GET", ":path": "/p?q=1", ":scheme": "http",
    }  # fmt: skip


def test_attributes_are_the_conversion_of_the_request() -> None:
    flags: dict[str, Any] = {
        "method": "PUT", "host": "api.test", "headers": [("x-forwarded-for", "192.0.2.7"),
        ("x-request-id", "r1")], "source_ip": "10.1.2.3", "port": 81, "principal": "p",
    }  # fmt: skip
    attrs = request_attributes("/p?q=1", **flags)
    assert attrs == to_attributes(check_request("/p?q=1", **flags))
    assert attrs.request_id == "r1"


POLICY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: foo}
spec:
  rules:
  - from: [{source: {principals: [td/ns/bar/sa/client], remoteIpBlocks: [192.0.2.7]}}]
    to: [{operation: {methods: [POST], hosts: [api.test], ports: ["8080"], paths: [/p]}}]
    when: [{key: "request.headers[x-team]", values: [dev]}]
"""


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param({}, id="nothing-matches"),
        pytest.param({"method": "POST", "host": "api.test", "port": 8080, "principal": "spiffe://td/ns/bar/sa/client",
                      "headers": [("x-team", "dev"), ("x-forwarded-for", "192.0.2.7")]}, id="everything-matches"),
        pytest.param({"method": "POST", "host": "api.test", "port": 8080, "principal": "spiffe://td/ns/bar/sa/client",
                      "headers": [("x-team", "ops"), ("x-forwarded-for", "192.0.2.7")]}, id="header-differs"),
    ],
)  # fmt: skip
def test_check_and_serve_decide_alike(tmp_path: Path, flags: dict[str, Any]) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(POLICY)
    store = ConfigStore([str(config)], Workload("foo", parse_labels("app=httpbin")), "istio-system")
    store.swap(store.build())
    keys = KeyStore()
    service = AuthorizationService(store, keys, Metrics(), decision_logger=DecisionLogger("none"))
    served = asyncio.run(service.Check(check_request("/p", **flags), None))
    checked = decide(request_attributes("/p", **flags), store.current, keys.keys, 0)
    assert served.dynamic_metadata.fields["decision"].string_value == checked.verdict.value
    assert served.dynamic_metadata.fields["reason"].string_value == checked.reason


def test_remote_ip_flag_is_the_only_value_set_after_the_conversion() -> None:
    converted = to_attributes(check_request("/p", source_ip="10.1.2.3"))
    assert request_attributes("/p", source_ip="10.1.2.3", remote_ip="192.0.2.9") == replace(
        converted, remote_ip="192.0.2.9"
    )
