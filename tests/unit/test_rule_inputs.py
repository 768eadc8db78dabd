"""What each rule field declares it reads (authz/fields.py), checked against what its getter
really reads, and the DecisionInputs snapshot/inputs.py derives from those declarations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from types import MappingProxyType

import pytest

from extauthz.attributes import RequestAttributes
from extauthz.authn.extract import Location
from extauthz.authn.providers import ProviderSet
from extauthz.authn.result import AuthnResult
from extauthz.authn.status import JwtStatus
from extauthz.authz.evaluate import CompiledPolicy, compile_policy
from extauthz.authz.fields import CONDITION_KEYS, OPERATION_FIELDS, SOURCE_FIELDS, Lookup
from extauthz.authz.fields import condition_lookup as lookup_of
from extauthz.authz.reads import Reads, RequestValue
from extauthz.authz.rules import CompiledRule, compile_rule, rule_reads
from extauthz.config.parse import ConfigError, parse_documents
from extauthz.config.resources import Condition, Rule
from extauthz.snapshot.inputs import NOT_REMEMBERED, DecisionInputs, decision_inputs
from tests.support.checks import op, policy, src, when

Request = tuple[RequestAttributes, AuthnResult]

BASE: Request = (
    RequestAttributes(
        method="GET", host="a.example:8080", path="/p", query="q=1",
        headers=MappingProxyType({"x-foo": "1", "x-bar": "2", "cookie": "c=1",
                                  "x-forwarded-for": "203.0.113.9", ":authority": "a.example"}),
        scheme="http", source_ip="10.0.0.1", source_port=5555, remote_ip="203.0.113.9",
        destination_ip="10.0.0.2", destination_port=8080,
        source_principal="spiffe://td/ns/foo/sa/a", sni="a.example", request_id="r1",
        context_extensions=MappingProxyType({"k": "v"}),
    ),
    AuthnResult(
        JwtStatus.Ok, principal="iss/sub", issuer="iss", subject="sub",
        claims=MappingProxyType({"aud": ["x"], "azp": "c", "groups": ["dev"], "org": {"team": "t"}}),
    ),
)  # fmt: skip


def _attrs(**changes: object) -> Callable[[Request], Request]:
    return lambda request: (replace(request[0], **changes), request[1])  # type: ignore[arg-type]


# One other value for each thing a rule could read.
CHANGED: dict[RequestValue, Callable[[Request], Request]] = {
    RequestValue.METHOD: _attrs(method="POST"),
    RequestValue.HOST: _attrs(host="b.example:8080"),
    RequestValue.PATH: _attrs(path="/q"),
    RequestValue.QUERY: _attrs(query="q=2"),
    RequestValue.SCHEME: _attrs(scheme="https"),
    RequestValue.SOURCE_IP: _attrs(source_ip="10.0.0.9"),
    RequestValue.SOURCE_PORT: _attrs(source_port=6666),
    RequestValue.REMOTE_IP: _attrs(remote_ip="198.51.100.1"),
    RequestValue.DESTINATION_IP: _attrs(destination_ip="10.0.0.8"),
    RequestValue.DESTINATION_PORT: _attrs(destination_port=9090),
    RequestValue.SOURCE_PRINCIPAL: _attrs(
        source_principal="spiffe://td/ns/bar/sa/b", peer_identities=("spiffe://td/ns/bar/sa/b",)
    ),
    RequestValue.SNI: _attrs(sni="b.example"),
    RequestValue.REQUEST_ID: _attrs(request_id="r2"),
    RequestValue.CONTEXT_EXTENSIONS: _attrs(context_extensions=MappingProxyType({"k": "w"})),
    RequestValue.AUTHN: lambda request: (
        request[0],
        AuthnResult(JwtStatus.Ok, principal="other/one", claims=MappingProxyType(
            {"aud": ["y"], "azp": "d", "groups": ["ops"], "org": {"team": "u"}})),
    ),
}  # fmt: skip


def _header_changed(name: str) -> Callable[[Request], Request]:
    def change(request: Request) -> Request:
        headers = dict(request[0].headers)
        headers[name] = headers.get(name, "") + "-changed"
        return replace(request[0], headers=MappingProxyType(headers)), request[1]

    return change


def test_every_request_attribute_can_be_declared() -> None:
    """A rule reading a new RequestAttributes field needs a RequestValue to declare it by."""
    # headers are declared by name; the peer's names come with its principal.
    read_otherwise = {"headers", "header_lists", "peer_identities", "_params"}
    attributes = {f.name for f in fields(RequestAttributes)} - read_otherwise
    assert {v.value for v in RequestValue} == attributes | {"authn"}
    assert set(CHANGED) == set(RequestValue)


LOOKUPS: list[tuple[str, Lookup]] = [
    *((f"from.{name}", lookup) for name, lookup in SOURCE_FIELDS.items()),
    *((f"to.{name}", lookup) for name, lookup in OPERATION_FIELDS.items()),
    *((f"when.{key}", lookup) for key, lookup in CONDITION_KEYS.items()),
    *((f"when.{key}", lookup_of(key)) for key in (
        "request.headers[X-Foo]", "request.headers[:authority]", "request.headers[Cookie]",
        "request.auth.claims[groups]", "request.auth.claims[org][team]",
    )),
]  # fmt: skip
HEADERS = sorted({*BASE[0].headers, "x-absent"})


@pytest.mark.parametrize(("name", "lookup"), [pytest.param(n, lk, id=n) for n, lk in LOOKUPS])
def test_a_getter_reads_nothing_it_does_not_declare(name: str, lookup: Lookup) -> None:
    """Changing anything undeclared, one at a time and all at once, leaves what the getter
    returns (so what the field's predicate decides) unchanged."""
    undeclared = [CHANGED[v] for v in RequestValue if v not in lookup.reads.values]
    undeclared += [_header_changed(h) for h in HEADERS if h not in lookup.reads.headers]
    seen = lookup.get(*BASE)
    everything = BASE
    for change in undeclared:
        assert lookup.get(*change(BASE)) == seen
        everything = change(everything)
    assert lookup.get(*everything) == seen


@pytest.mark.parametrize(("name", "lookup"), [pytest.param(n, lk, id=n) for n, lk in LOOKUPS])
def test_a_getter_reads_what_it_declares(name: str, lookup: Lookup) -> None:
    """No declaration is wider than its getter: changing each declared value alone changes
    what the getter returns (remote.ip's fallback to the peer only without a client address)."""
    declared = [(v.name, CHANGED[v]) for v in lookup.reads.values]
    declared += [(h, _header_changed(h)) for h in lookup.reads.headers]
    falls_back = RequestValue.REMOTE_IP in lookup.reads.values
    without_client = replace(BASE[0], remote_ip=""), BASE[1]
    for what, change in declared:
        base = without_client if falls_back and what == "SOURCE_IP" else BASE
        assert lookup.get(*change(base)) != lookup.get(*base), what


@pytest.mark.parametrize(
    ("key", "reads"),
    [
        pytest.param("request.headers[X-Foo]", Reads.of(headers=("x-foo",)), id="header-lower-cased"),
        pytest.param("request.auth.claims[org][team]", Reads.of(RequestValue.AUTHN), id="nested-claim"),
        pytest.param("remote.ip", Reads.of(RequestValue.REMOTE_IP, RequestValue.SOURCE_IP), id="remote-ip-falls-back-to-the-peer"),
        pytest.param("source.namespace", Reads.of(RequestValue.SOURCE_PRINCIPAL), id="namespace-from-the-principal"),
    ],
)  # fmt: skip
def test_when_keys_declare(key: str, reads: Reads) -> None:
    assert lookup_of(key).reads == reads


def test_a_when_key_without_a_lookup_is_a_config_error() -> None:
    rule = Rule(conditions=(Condition("experimental.envoy.filters.x", ("a",)),))
    with pytest.raises(ConfigError):
        rule_reads(rule)
    with pytest.raises(ConfigError):
        compile_rule(rule, 0)


def test_a_compiled_rule_reads_the_union_of_its_fields() -> None:
    rule = Rule(conditions=(Condition("request.headers[X-B]", ("1",)),
                            Condition("request.headers[x-a]", ("1",)),
                            Condition("connection.sni", ("s",))))  # fmt: skip
    compiled = compile_rule(rule, 0)
    assert compiled.reads == rule_reads(rule)
    assert compiled.reads == Reads.of(RequestValue.SNI, headers=("x-b", "x-a"))


# --- DecisionInputs, derived ------------------------------------------------------------


def _compiled(reads: Reads) -> CompiledPolicy:
    rule = CompiledRule(0, lambda attrs, authn: True, (), reads)
    return CompiledPolicy("foo/p", "ALLOW", False, (rule,))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(RequestValue.METHOD, DecisionInputs(), id="method-always-in-the-key"),
        pytest.param(RequestValue.HOST, DecisionInputs(), id="host-always-in-the-key"),
        pytest.param(RequestValue.PATH, DecisionInputs(), id="path-always-in-the-key"),
        pytest.param(RequestValue.QUERY, DecisionInputs(), id="query-in-the-raw-path"),
        pytest.param(RequestValue.AUTHN, DecisionInputs(), id="token-at-the-providers-locations"),
        pytest.param(RequestValue.SOURCE_IP, DecisionInputs(source_ip=True), id="source-ip"),
        pytest.param(RequestValue.REMOTE_IP, DecisionInputs(source_ip=True, headers=("x-forwarded-for",)), id="remote-ip-from-xff-and-the-peer"),
        pytest.param(RequestValue.DESTINATION_IP, DecisionInputs(destination=True), id="destination-ip"),
        pytest.param(RequestValue.DESTINATION_PORT, DecisionInputs(destination=True), id="destination-port"),
        pytest.param(RequestValue.SOURCE_PRINCIPAL, DecisionInputs(source_principal=True), id="peer-principal"),
        pytest.param(RequestValue.SNI, DecisionInputs(sni=True), id="sni"),
        pytest.param(RequestValue.SCHEME, NOT_REMEMBERED, id="scheme-not-in-the-key"),
        pytest.param(RequestValue.SOURCE_PORT, NOT_REMEMBERED, id="source-port-not-in-the-key"),
        pytest.param(RequestValue.REQUEST_ID, NOT_REMEMBERED, id="request-id-not-in-the-key"),
        pytest.param(RequestValue.CONTEXT_EXTENSIONS, NOT_REMEMBERED, id="context-extensions-not-in-the-key"),
    ],
)  # fmt: skip
def test_each_declared_value_has_its_place_in_the_key(
    value: RequestValue, expected: DecisionInputs
) -> None:
    assert decision_inputs(ProviderSet(), [_compiled(Reads.of(value))]) == expected


def test_a_token_location_not_understood_makes_the_workload_unremembered() -> None:
    providers = ProviderSet(locations=(Location("trailer", "x-token"),))
    assert decision_inputs(providers, []) == NOT_REMEMBERED


def test_headers_are_listed_once_in_first_seen_order() -> None:
    providers = ProviderSet(
        locations=(Location("header", "authorization"), Location("cookie", "s"))
    )
    compiled = [_compiled(Reads.of(RequestValue.REMOTE_IP, headers=("x-b", "authorization"))),
                _compiled(Reads.of(headers=("cookie", "x-a")))]  # fmt: skip
    assert decision_inputs(providers, compiled).headers == (
        "authorization", "cookie", "x-b", "x-a", "x-forwarded-for",
    )  # fmt: skip


@pytest.mark.parametrize(
    "yaml_text",
    [
        pytest.param(policy(op("paths: [/a], notMethods: [GET], hosts: [x.example], ports: ['80']")), id="operation"),
        pytest.param(policy(src("principals: [a/b], notNamespaces: [n], ipBlocks: [10.0.0.0/8], notRemoteIpBlocks: [10.0.0.0/8]")), id="source"),
        pytest.param(policy(when("request.headers[X-Foo]", "[a]")) + policy(when("connection.sni", "[s]"), name="q", action="DENY"), id="when"),
        pytest.param(policy(when("destination.ip", "[10.0.0.1]"), action="AUDIT") + policy(when("request.auth.claims[g]", "[a]"), name="q"), id="audit-and-claims"),
    ],
)  # fmt: skip
def test_compiled_and_yaml_policies_give_the_same_inputs(yaml_text: str) -> None:
    """Compiled policies declare what they read; policies as read from YAML are looked up
    with the same declarations."""
    read = parse_documents(yaml_text, "test.yaml").authorization_policies
    compiled = [c for c in map(compile_policy, read) if c is not None]
    assert decision_inputs(ProviderSet(), compiled) == decision_inputs(ProviderSet(), read)
    assert decision_inputs(ProviderSet(), compiled) != DecisionInputs()
