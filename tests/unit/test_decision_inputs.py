"""Which request values a workload's decisions read (snapshot/inputs.py) and the key built from
exactly those values (envoy_api.decision_key)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from envoy.service.auth.v3 import external_auth_pb2

from extauthz.authn.providers import ProviderSet
from extauthz.config.resources import AuthorizationPolicy, Condition, Meta, Origin, Rule
from extauthz.server.envoy_api import MAX_KEY_CHARS, decision_key
from extauthz.snapshot.inputs import NOT_REMEMBERED, DecisionInputs, decision_inputs
from tests.support.checks import (
    BASE,
    DENIED,
    OK,
    Req,
    authn,
    codes,
    op,
    policy,
    serve,
    src,
    when,
    wire,
)
from tests.support.config import snapshot_from

# --- which inputs a workload's decisions read -------------------------------------------


def _sorted(inputs: DecisionInputs) -> DecisionInputs:
    assert len(set(inputs.headers)) == len(inputs.headers), "a header is listed twice"
    return replace(inputs, headers=tuple(sorted(inputs.headers)))


NONE = DecisionInputs()
SOURCE = DecisionInputs(source_ip=True)
REMOTE = DecisionInputs(source_ip=True, headers=("x-forwarded-for",))
DESTINATION = DecisionInputs(destination=True)
PRINCIPAL = DecisionInputs(source_principal=True)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        pytest.param("", NONE, id="nothing-applies"),
        pytest.param(policy(op("paths: [/a], methods: [GET], hosts: [x.example]")), NONE, id="paths-methods-hosts-read-nothing-extra"),
        pytest.param(policy(op("notPaths: [/a], notMethods: [GET], notHosts: [x.example]")), NONE, id="not-paths-methods-hosts-read-nothing-extra"),
        pytest.param(policy(src("requestPrincipals: ['*'], notRequestPrincipals: [a/b]")), NONE, id="request-principals-read-the-token-only"),
        pytest.param(authn(), DecisionInputs(headers=("authorization",)), id="default-jwt-locations"),
        pytest.param(authn("fromHeaders: [{name: X-Jwt-Assertion, prefix: 'Bearer '}]"), DecisionInputs(headers=("x-jwt-assertion",)), id="jwt-from-headers-lower-cased"),
        pytest.param(authn("fromParams: [token]"), NONE, id="jwt-from-params-live-in-the-path"),
        pytest.param(authn("fromCookies: [session]"), DecisionInputs(headers=("cookie",)), id="jwt-from-cookies"),
        pytest.param(authn() + policy(when("request.headers[Authorization]", "[x]")), DecisionInputs(headers=("authorization",)), id="header-read-twice-listed-once"),
        pytest.param(policy(src("ipBlocks: [10.0.0.0/8]")), SOURCE, id="ip-blocks"),
        pytest.param(policy(src("notIpBlocks: [10.0.0.0/8]")), SOURCE, id="not-ip-blocks"),
        pytest.param(policy(src("remoteIpBlocks: [10.0.0.0/8]")), REMOTE, id="remote-ip-blocks"),
        pytest.param(policy(src("notRemoteIpBlocks: [10.0.0.0/8]")), REMOTE, id="not-remote-ip-blocks"),
        pytest.param(policy(op("ports: ['8080']")), DESTINATION, id="ports"),
        pytest.param(policy(op("notPorts: ['8080']")), DESTINATION, id="not-ports"),
        pytest.param(policy(src("principals: [cluster.local/ns/foo/sa/a]")), PRINCIPAL, id="principals"),
        pytest.param(policy(src("notPrincipals: [cluster.local/ns/foo/sa/a]")), PRINCIPAL, id="not-principals"),
        pytest.param(policy(src("namespaces: [foo]")), PRINCIPAL, id="namespaces"),
        pytest.param(policy(src("notNamespaces: [foo]")), PRINCIPAL, id="not-namespaces"),
        pytest.param(policy(when("request.headers[X-Foo]", "[a]")), DecisionInputs(headers=("x-foo",)), id="when-header-lower-cased"),
        pytest.param(policy(when("request.auth.claims[groups]", "[a]")), NONE, id="when-claim"),
        pytest.param(policy(when("request.auth.claims[org][team]", "[a]")), NONE, id="when-nested-claim"),
        pytest.param(policy(when("request.auth.principal", "[a/b]")), NONE, id="when-request-principal"),
        pytest.param(policy(when("request.auth.audiences", "[a]")), NONE, id="when-audiences"),
        pytest.param(policy(when("request.auth.presenter", "[a]")), NONE, id="when-presenter"),
        pytest.param(policy(when("source.ip", "[10.0.0.1]")), SOURCE, id="when-source-ip"),
        pytest.param(policy(when("remote.ip", "[10.0.0.1]")), REMOTE, id="when-remote-ip"),
        pytest.param(policy(when("source.namespace", "[foo]")), PRINCIPAL, id="when-source-namespace"),
        pytest.param(policy(when("source.principal", "[a]")), PRINCIPAL, id="when-source-principal"),
        pytest.param(policy(when("destination.ip", "[10.0.0.1]")), DESTINATION, id="when-destination-ip"),
        pytest.param(policy(when("destination.port", "['80']")), DESTINATION, id="when-destination-port"),
        pytest.param(policy(when("connection.sni", "[a.example]")), DecisionInputs(sni=True), id="when-sni"),
        pytest.param(policy(src("ipBlocks: [10.0.0.0/8]"), action="AUDIT"), SOURCE, id="audit-policy-counts-its-metadata-depends-on-it"),
        pytest.param(policy(when("connection.sni", "[a]"), action="DENY", dry_run=True), DecisionInputs(sni=True), id="dry-run-policy-counts"),
        pytest.param(policy(op("ports: ['80']"), action="DENY"), DESTINATION, id="deny-policy"),
        pytest.param(policy(op("ports: ['80']"), namespace="istio-system"), DESTINATION, id="root-namespace-policy-applies"),
        pytest.param(policy(src("ipBlocks: [10.0.0.0/8]"), selector="app: other"), NONE, id="another-workloads-policy-reads-nothing"),
        pytest.param(policy(src("ipBlocks: [10.0.0.0/8]"), namespace="bar"), NONE, id="another-namespaces-policy-reads-nothing"),
        pytest.param(
            authn("fromCookies: [session]") + policy(when("request.headers[X-Foo]", "[a]")) + policy(src("remoteIpBlocks: [10.0.0.0/8]"), name="q"),
            DecisionInputs(headers=("cookie", "x-foo", "x-forwarded-for"), source_ip=True),
            id="combined",
        ),
    ],
)  # fmt: skip
def test_decision_inputs(yaml_text: str, expected: DecisionInputs) -> None:
    inputs = snapshot_from(yaml_text).inputs
    assert _sorted(inputs) == _sorted(expected)
    assert inputs.rememberable


def test_a_when_key_not_understood_makes_the_workload_unremembered() -> None:
    odd = AuthorizationPolicy(
        Meta("odd", "foo"),
        Origin("test.yaml", 1),
        rules=(Rule(conditions=(Condition("experimental.envoy.filters.x", ("a",)),)),),
    )
    inputs = decision_inputs(ProviderSet(), [odd])
    assert inputs == NOT_REMEMBERED and not inputs.rememberable
    assert decision_key(Req().build().attributes, inputs, 1) is None


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(replace(Req(), method="OPTIONS"), id="options"),
        pytest.param(replace(Req(), method=""), id="no-method"),
        pytest.param(replace(Req(), path=""), id="no-path"),
        pytest.param(replace(Req(), host=""), id="no-host"),
    ],
)  # fmt: skip
def test_requests_without_a_key(request_: Req) -> None:
    assert decision_key(request_.build().attributes, DecisionInputs(), 1) is None


def test_a_header_map_request_is_keyed_by_each_headers_entries() -> None:
    # With encode_raw_headers, one header sent twice is two tokens to jwt_authn, while the
    # same bytes in one entry are one: the two must not share a remembered decision.
    def key(*entries: bytes) -> object:
        request = external_auth_pb2.CheckRequest()
        http = request.attributes.request.http
        http.method, http.host, http.path = "GET", "a.example", "/"
        for value in entries:
            http.header_map.headers.add(key="X-Foo", raw_value=value)
        return decision_key(request.attributes, DecisionInputs(headers=("x-foo",)), 1)

    assert key(b"yes") == (1, "GET", "a.example", "/", ("yes",))
    assert key(b"a", b"b") == (1, "GET", "a.example", "/", ("a", "b"))
    assert key(b"a", b"b") != key(b"a,b")


@pytest.mark.parametrize(
    ("path", "header", "remembered"),
    [
        pytest.param("/" + "p" * (MAX_KEY_CHARS - 20), "x" * 10, True, id="just-under"),
        pytest.param("/" + "p" * MAX_KEY_CHARS, "", False, id="long-path"),
        pytest.param("/p", "x" * MAX_KEY_CHARS, False, id="long-header"),
    ],
)
def test_long_requests_are_never_remembered(path: str, header: str, remembered: bool) -> None:
    """A client can send a new 60 KiB path or header with every request: keys past
    MAX_KEY_CHARS are not kept, so the memo's memory stays bounded."""
    request = replace(Req(), host="h.example", path=path, headers=(("x-foo", header),))
    key = decision_key(request.build().attributes, DecisionInputs(headers=("x-foo",)), 1)
    assert (key is not None) is remembered


def test_a_long_request_is_answered_but_not_remembered(tmp_path: Path) -> None:
    served = serve(tmp_path, policy(op("paths: [/p]"), action="DENY", name="deny-p"))
    long_path = replace(BASE, path="/" + "q" * (MAX_KEY_CHARS + 1))
    answers = served.check(long_path, long_path, BASE, BASE)
    assert codes(answers) == [OK, OK, DENIED, DENIED]
    assert [wire(a) for a in answers[:2]] == [wire(served.fresh(long_path.build()))] * 2
    assert (served.service.memo.hits, len(served.service.memo)) == (1, 1)  # BASE only


def test_the_key_holds_exactly_the_values_listed() -> None:
    inputs = DecisionInputs(headers=("x-foo", "x-absent"), source_ip=True, destination=True,
                            source_principal=True, sni=True)  # fmt: skip
    request = Req(
        method="POST", host="h.example", path="/p?q=1", headers=(("x-foo", "1"), ("x-other", "2")),
        source_ip="10.1.1.1", destination_ip="10.2.2.2", destination_port=81,
        principal="spiffe://td/ns/a/sa/b", sni="s.example",
    )  # fmt: skip
    assert decision_key(request.build().attributes, inputs, 7) == (
        7, "POST", "h.example", "/p?q=1", "1", None,
        # The peer: its principal and its certificate (here none), whose names RBAC reads.
        "10.1.1.1", "10.2.2.2", 81, "spiffe://td/ns/a/sa/b", "", "s.example",
    )  # fmt: skip
    assert decision_key(request.build().attributes, DecisionInputs(), 7) == (
        7, "POST", "h.example", "/p?q=1",
    )  # fmt: skip
