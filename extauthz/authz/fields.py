"""Istio's rule fields and `when` keys: how each reads a request, and what that reads.

One Lookup per field or key holds the getter and, beside it, the request values it reads
(answers are remembered by exactly those values, see snapshot/inputs.py; and
tests/unit/test_rule_inputs.py checks every getter against its declaration), and how the
field's values compile (Istio strings, IP blocks, ports, service accounts or trust domains;
a service account without a namespace is the policy's).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from extauthz.attributes import RequestAttributes
from extauthz.authn.result import AuthnResult
from extauthz.authz.match import IpMatcher, RequestPrincipalMatcher, StringMatcher
from extauthz.authz.reads import Reads, RequestValue
from extauthz.config.parse import ConfigError

Predicate = Callable[[RequestAttributes, AuthnResult], bool]
# An attribute getter returns every value the attribute has (empty when absent).
Getter = Callable[[RequestAttributes, AuthnResult], Sequence[str]]
# (lookup, the field's values, negate, the policy's namespace) -> the field's predicate
Build = Callable[["Lookup", Sequence[str], bool, str], Predicate]

_SPIFFE = "spiffe://"
_CLAIM_KEY = re.compile(r"^request\.auth\.claims((?:\[[^\[\]]+\])+)$")
_HEADER_KEY = re.compile(r"^request\.headers\[([^\[\]]+)\]$")


def _one(value: str) -> Sequence[str]:
    return (value,) if value else ()


def remote_ip(attrs: RequestAttributes) -> str:
    return attrs.remote_ip or attrs.source_ip


def _claim_values(claims: Any, path: Sequence[str]) -> Sequence[str]:
    value = claims
    for step in path:
        if not isinstance(value, Mapping) or step not in value:
            return ()
        value = value[step]
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return ()


@dataclass(frozen=True, slots=True)
class Lookup:
    """One request value that rule fields test: how it is read, what of the request that
    reads, and how the field's values compile."""

    get: Getter
    reads: Reads
    build: Build
    ignore_case: bool = False  # `hosts`
    templates: bool = False  # `paths`: {*} and {**}

    def predicate(self, values: Sequence[str], *, negate: bool, namespace: str = "") -> Predicate:
        """`namespace` is the policy's (read by `serviceAccounts` only)."""
        return self.build(self, values, negate, namespace)


def _matching(getter: Getter, matches: Callable[[str], bool], negate: bool) -> Predicate:
    """Any value the getter returns matches; negated, none does (an absent value included)."""
    if negate:
        return lambda attrs, authn: not any(matches(v) for v in getter(attrs, authn))
    return lambda attrs, authn: any(matches(v) for v in getter(attrs, authn))


def _string_field(lookup: Lookup, values: Sequence[str], negate: bool, namespace: str) -> Predicate:
    matcher = StringMatcher(values, ignore_case=lookup.ignore_case, templates=lookup.templates)
    getter = lookup.get
    if negate:
        return lambda attrs, authn: not matcher.matches_any(getter(attrs, authn))
    return lambda attrs, authn: matcher.matches_any(getter(attrs, authn))


def service_account_pattern(value: str, namespace: str) -> str:
    """istiod's serviceAccountRegex: `sa` or `ns/sa` (without `ns/`, the policy's namespace)
    as a full match of the peer's SPIFFE URI: any trust domain, then `/ns/<ns>/`, optional
    segments, `sa/<sa>`, and nothing or `/...` after it (so `sa/a` never matches `sa/ab`)."""
    ns, slash, sa = value.partition("/")
    if not slash:
        ns, sa = namespace, value
    if not ns:
        raise ConfigError(f"service account {value!r} needs the policy's namespace")
    return f"spiffe://.+/ns/{re.escape(ns)}/(.+/|)sa/{re.escape(sa)}(/.+)?"


def _service_account_field(
    lookup: Lookup, values: Sequence[str], negate: bool, namespace: str
) -> Predicate:
    pattern = re.compile("|".join(f"(?:{service_account_pattern(v, namespace)})" for v in values))
    return _matching(lookup.get, lambda principal: bool(pattern.fullmatch(principal)), negate)


def trust_domain_matcher(value: str) -> Callable[[str], bool]:
    """istiod's srcTrustDomainGenerator on the peer's SPIFFE URI: `*` any SPIFFE identity,
    `td` the prefix `spiffe://td/`, and one `*` at either end any run of characters but `/`
    in its place."""
    if value == "*":
        return lambda principal: principal.startswith(_SPIFFE)
    if "*" not in value:
        prefix = f"{_SPIFFE}{value}/"
        return lambda principal: principal.startswith(prefix)
    head, _, tail = value.partition("*")
    pattern = re.compile(f"{re.escape(_SPIFFE + head)}[^/]*{re.escape(tail)}/.*")
    return lambda principal: bool(pattern.fullmatch(principal))


def peer_principal_matcher(value: str) -> Callable[[str], bool]:
    """istiod's srcPrincipalGenerator (StringMatcherWithPrefix with `spiffe://`) on one of the
    peer's names: `*` any name, `*x` the regex `spiffe://.*x`, `x*` the prefix `spiffe://x`,
    otherwise exactly `spiffe://x`."""
    if value == "*":
        return bool
    if value.startswith("*"):
        pattern = re.compile(f"{_SPIFFE}.*{re.escape(value[1:])}")
        return lambda name: bool(pattern.fullmatch(name))
    if value.endswith("*"):
        prefix = _SPIFFE + value[:-1]
        return lambda name: name.startswith(prefix)
    exact = _SPIFFE + value
    return lambda name: name == exact


def _peer_principal_field(
    lookup: Lookup, values: Sequence[str], negate: bool, namespace: str
) -> Predicate:
    matchers = tuple(peer_principal_matcher(value) for value in values)
    return _matching(lookup.get, lambda name: any(m(name) for m in matchers), negate)


def peer_namespace_pattern(value: str) -> str:
    """istiod's srcNamespaceGenerator: the regex `.*/ns/<value>/.*` over a whole name, each
    `*` in the value any run of characters (slashes included)."""
    return f".*/ns/{'.*'.join(re.escape(part) for part in value.split('*'))}/.*"


def _peer_namespace_field(
    lookup: Lookup, values: Sequence[str], negate: bool, namespace: str
) -> Predicate:
    pattern = re.compile("|".join(f"(?:{peer_namespace_pattern(value)})" for value in values))
    return _matching(lookup.get, lambda name: bool(pattern.fullmatch(name)), negate)


def _trust_domain_field(
    lookup: Lookup, values: Sequence[str], negate: bool, namespace: str
) -> Predicate:
    matchers = tuple(trust_domain_matcher(value) for value in values)
    return _matching(lookup.get, lambda p: any(m(p) for m in matchers), negate)


def _ip_field(lookup: Lookup, values: Sequence[str], negate: bool, namespace: str) -> Predicate:
    matcher = IpMatcher(values)
    getter = lookup.get
    if negate:
        return lambda attrs, authn: not any(matcher.matches(v) for v in getter(attrs, authn))
    return lambda attrs, authn: any(matcher.matches(v) for v in getter(attrs, authn))


def _port_field(lookup: Lookup, values: Sequence[str], negate: bool, namespace: str) -> Predicate:
    ports = frozenset(values)
    for port in ports:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"port {port!r} is not a number from 1 to 65535")
    getter = lookup.get
    if negate:
        return lambda attrs, authn: not ports.intersection(getter(attrs, authn))
    return lambda attrs, authn: bool(ports.intersection(getter(attrs, authn)))


def _payload_string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) else None


def _request_principal_field(
    lookup: Lookup, values: Sequence[str], negate: bool, namespace: str
) -> Predicate:
    # Not the joined "iss/sub" the getter shows: istiod matches the payload's iss and sub
    # apart (RequestPrincipalMatcher), each of which must be there.
    matcher = RequestPrincipalMatcher(values)

    def matches(attrs: RequestAttributes, authn: AuthnResult) -> bool:
        claims = authn.claims
        return matcher.matches(_payload_string(claims, "iss"), _payload_string(claims, "sub"))

    if negate:
        return lambda attrs, authn: not matches(attrs, authn)
    return matches


def _claim(*path: str) -> Lookup:
    return Lookup(
        lambda attrs, authn: _claim_values(authn.claims, path),
        Reads.of(RequestValue.AUTHN),
        _string_field,
    )


def _header_field(lookup: Lookup, values: Sequence[str], negate: bool, namespace: str) -> Predicate:
    # istiod's HeaderMatcher: `*` is Envoy's present_match (an empty value is present); any
    # other value is tested on each entry of the header apart, as Envoy 1.40's header
    # matcher does for a header sent on several lines (never on the entries joined by ",").
    is_presence = "*" in values
    matcher = StringMatcher([v for v in values if v != "*"])
    getter = lookup.get

    def matches(attrs: RequestAttributes, authn: AuthnResult) -> bool:
        entries = getter(attrs, authn)
        return bool(entries) and (is_presence or matcher.matches_any(entries))

    if negate:
        return lambda attrs, authn: not matches(attrs, authn)
    return matches


def _header(name: str) -> Lookup:
    # Envoy holds the Host header as :authority, and its header matcher reads `host` as that.
    name = ":authority" if name == "host" else name
    return Lookup(
        lambda attrs, authn: attrs.header_values(name),
        Reads.of(headers=(name,)),
        _header_field,
    )


_V = RequestValue
# The peer's names (every URI SAN, DNS SAN, then the subject) are matched one by one, as
# Envoy's RBAC matches an authenticated principal; principals, namespaces, serviceAccounts
# and trustDomains all match whole names, `spiffe://` included, as istiod writes them.
_PEER_PRINCIPAL = Lookup(
    lambda attrs, authn: attrs.peer_names, Reads.of(_V.SOURCE_PRINCIPAL), _peer_principal_field
)
_REQUEST_PRINCIPAL = Lookup(
    lambda attrs, authn: _one(authn.principal), Reads.of(_V.AUTHN), _request_principal_field
)
_PEER_SPIFFE_ID = replace(_PEER_PRINCIPAL, build=_service_account_field)
_PEER_TRUST_DOMAIN = replace(_PEER_SPIFFE_ID, build=_trust_domain_field)
_NAMESPACE = replace(_PEER_PRINCIPAL, build=_peer_namespace_field)
_SOURCE_IP = Lookup(lambda attrs, authn: _one(attrs.source_ip), Reads.of(_V.SOURCE_IP), _ip_field)
# remote.ip falls back to the direct peer when Envoy found no client address.
_REMOTE_IP = Lookup(
    lambda attrs, authn: _one(remote_ip(attrs)), Reads.of(_V.REMOTE_IP, _V.SOURCE_IP), _ip_field
)
# `hosts` match the :authority as sent, port included (istiod's header matcher on
# :authority, ignoring case only): `example.com` does not match `example.com:8080`.
_HOST = Lookup(
    lambda attrs, authn: _one(attrs.host), Reads.of(_V.HOST), _string_field, ignore_case=True
)
_PORT = Lookup(
    lambda attrs, authn: _one(str(attrs.destination_port or "")),
    Reads.of(_V.DESTINATION_PORT),
    _port_field,
)
_METHOD = Lookup(lambda attrs, authn: _one(attrs.method), Reads.of(_V.METHOD), _string_field)
_PATH = Lookup(
    lambda attrs, authn: _one(attrs.path), Reads.of(_V.PATH), _string_field, templates=True
)

# field name -> its lookup (`not_<field>` reads the same); `when` key -> its lookup.
SOURCE_FIELDS: Mapping[str, Lookup] = {
    "principals": _PEER_PRINCIPAL,
    "request_principals": _REQUEST_PRINCIPAL,
    "namespaces": _NAMESPACE,
    "ip_blocks": _SOURCE_IP,
    "remote_ip_blocks": _REMOTE_IP,
    "service_accounts": _PEER_SPIFFE_ID,
    "trust_domains": _PEER_TRUST_DOMAIN,
}
OPERATION_FIELDS: Mapping[str, Lookup] = {
    "hosts": _HOST,
    "ports": _PORT,
    "methods": _METHOD,
    "paths": _PATH,
}
CONDITION_KEYS: Mapping[str, Lookup] = {
    "source.ip": _SOURCE_IP,
    "remote.ip": _REMOTE_IP,
    "source.namespace": _NAMESPACE,
    "source.principal": _PEER_PRINCIPAL,
    "request.auth.principal": _REQUEST_PRINCIPAL,
    "request.auth.audiences": _claim("aud"),
    "request.auth.presenter": _claim("azp"),
    "destination.ip": Lookup(
        lambda attrs, authn: _one(attrs.destination_ip), Reads.of(_V.DESTINATION_IP), _ip_field
    ),
    "destination.port": _PORT,
    "connection.sni": Lookup(lambda attrs, authn: _one(attrs.sni), Reads.of(_V.SNI), _string_field),
}


def condition_lookup(key: str) -> Lookup:
    """The lookup of a `when` key; a key no lookup is declared for is a ConfigError (so it
    can neither be enforced nor remembered by)."""
    found = CONDITION_KEYS.get(key)
    if found is not None:
        return found
    header = _HEADER_KEY.match(key)
    if header:
        return _header(header.group(1).lower())
    claim = _CLAIM_KEY.match(key)
    if claim:
        return _claim(*re.findall(r"\[([^\[\]]+)\]", claim.group(1)))
    raise ConfigError(f"when.key {key!r} is not a key Istio supports for HTTP")
