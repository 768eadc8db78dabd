"""Compile AuthorizationPolicy rules into predicates over (request, authentication).

Istio's semantics: a rule matches when its `from`, `to` and `when` all match; entries of one
list are OR'd, fields inside one source or operation are AND'd, the values of one field are
OR'd, and a `notX` field matches when none of its values match, an absent attribute
included (as Envoy's RBAC `not_id` does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from extauthz.attributes import RequestAttributes
from extauthz.authn.result import AuthnResult
from extauthz.authz.match import IpMatcher, StringMatcher
from extauthz.config.parse import ConfigError
from extauthz.config.resources import Condition, Operation, Rule, Source

Predicate = Callable[[RequestAttributes, AuthnResult], bool]
# An attribute getter returns every value the attribute has (empty when absent).
Getter = Callable[[RequestAttributes, AuthnResult], Sequence[str]]

_SPIFFE = "spiffe://"
_NAMESPACE_IN_PRINCIPAL = re.compile(r"/ns/([^/]+)/")
_CLAIM_KEY = re.compile(r"^request\.auth\.claims((?:\[[^\[\]]+\])+)$")
_HEADER_KEY = re.compile(r"^request\.headers\[([^\[\]]+)\]$")


def _one(value: str) -> Sequence[str]:
    return (value,) if value else ()


def peer_principal(attrs: RequestAttributes) -> str:
    principal = attrs.source_principal
    return principal[len(_SPIFFE) :] if principal.startswith(_SPIFFE) else principal


def peer_namespace(attrs: RequestAttributes) -> str:
    found = _NAMESPACE_IN_PRINCIPAL.search(attrs.source_principal)
    return found.group(1) if found else ""


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


def _host_values(attrs: RequestAttributes) -> Sequence[str]:
    # `hosts` match the authority with or without its port.
    host = attrs.host
    if not host:
        return ()
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") and host.count(":") == 1 else host
    return (host, bare) if bare != host else (host,)


def _string_field(getter: Getter, values: Iterable[str], *, negate: bool, **kw: bool) -> Predicate:
    matcher = StringMatcher(values, **kw)
    if negate:
        return lambda attrs, authn: not matcher.matches_any(getter(attrs, authn))
    return lambda attrs, authn: matcher.matches_any(getter(attrs, authn))


def _ip_field(getter: Getter, values: Iterable[str], *, negate: bool) -> Predicate:
    matcher = IpMatcher(values)
    if negate:
        return lambda attrs, authn: not any(matcher.matches(v) for v in getter(attrs, authn))
    return lambda attrs, authn: any(matcher.matches(v) for v in getter(attrs, authn))


def _port_field(getter: Getter, values: Iterable[str], *, negate: bool) -> Predicate:
    ports = frozenset(values)
    for port in ports:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"port {port!r} is not a number from 1 to 65535")
    if negate:
        return lambda attrs, authn: not ports.intersection(getter(attrs, authn))
    return lambda attrs, authn: bool(ports.intersection(getter(attrs, authn)))


_get_principal: Getter = lambda attrs, authn: _one(peer_principal(attrs))  # noqa: E731
_get_request_principal: Getter = lambda attrs, authn: _one(authn.principal)  # noqa: E731
_get_namespace: Getter = lambda attrs, authn: _one(peer_namespace(attrs))  # noqa: E731
_get_source_ip: Getter = lambda attrs, authn: _one(attrs.source_ip)  # noqa: E731
_get_remote_ip: Getter = lambda attrs, authn: _one(remote_ip(attrs))  # noqa: E731
_get_host: Getter = lambda attrs, authn: _host_values(attrs)  # noqa: E731
_get_port: Getter = lambda attrs, authn: _one(str(attrs.destination_port or ""))  # noqa: E731
_get_method: Getter = lambda attrs, authn: _one(attrs.method)  # noqa: E731
_get_path: Getter = lambda attrs, authn: _one(attrs.path)  # noqa: E731


def _kind_of(getter: Getter) -> Callable[..., Predicate]:
    if getter in (_get_source_ip, _get_remote_ip):
        return _ip_field
    if getter is _get_port:
        return _port_field
    return _string_field


# field name -> (getter, string-matcher options); `not_<field>` uses the same getter.
_SOURCE_FIELDS: dict[str, tuple[Getter, dict[str, bool]]] = {
    "principals": (_get_principal, {}),
    "request_principals": (_get_request_principal, {}),
    "namespaces": (_get_namespace, {}),
    "ip_blocks": (_get_source_ip, {}),
    "remote_ip_blocks": (_get_remote_ip, {}),
}
_OPERATION_FIELDS: dict[str, tuple[Getter, dict[str, bool]]] = {
    "hosts": (_get_host, {"ignore_case": True}),
    "ports": (_get_port, {}),
    "methods": (_get_method, {}),
    "paths": (_get_path, {"templates": True}),
}


Named = tuple[str, Predicate]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _field_predicates(
    spec: Source | Operation, fields: dict[str, tuple[Getter, dict[str, bool]]]
) -> list[Named]:
    predicates: list[Named] = []
    for name, (getter, options) in fields.items():
        for attr, negate in ((name, False), (f"not_{name}", True)):
            values: tuple[str, ...] = getattr(spec, attr)
            if values:
                build = _kind_of(getter)
                predicates.append((_camel(attr), build(getter, values, negate=negate, **options)))
    return predicates


def _condition_getter(key: str) -> tuple[Getter, Callable[..., Predicate], dict[str, bool]]:
    simple: dict[str, tuple[Getter, Callable[..., Predicate], dict[str, bool]]] = {
        "source.ip": (_get_source_ip, _ip_field, {}),
        "remote.ip": (_get_remote_ip, _ip_field, {}),
        "source.namespace": (_get_namespace, _string_field, {}),
        "source.principal": (_get_principal, _string_field, {}),
        "request.auth.principal": (_get_request_principal, _string_field, {}),
        "request.auth.audiences": (
            lambda attrs, authn: _claim_values(authn.claims, ("aud",)),
            _string_field,
            {},
        ),
        "request.auth.presenter": (
            lambda attrs, authn: _claim_values(authn.claims, ("azp",)),
            _string_field,
            {},
        ),
        "destination.ip": (lambda attrs, authn: _one(attrs.destination_ip), _ip_field, {}),
        "destination.port": (_get_port, _port_field, {}),
        "connection.sni": (lambda attrs, authn: _one(attrs.sni), _string_field, {}),
    }
    if key in simple:
        return simple[key]
    header = _HEADER_KEY.match(key)
    if header:
        name = header.group(1).lower()
        return (lambda attrs, authn: _one(attrs.headers.get(name, "")), _string_field, {})
    claim = _CLAIM_KEY.match(key)
    if claim:
        path = tuple(re.findall(r"\[([^\[\]]+)\]", claim.group(1)))
        return (lambda attrs, authn: _claim_values(authn.claims, path), _string_field, {})
    raise ConfigError(f"when.key {key!r} is not a key Istio supports for HTTP")


def _condition_predicate(condition: Condition) -> Predicate:
    getter, build, options = _condition_getter(condition.key)
    parts: list[Predicate] = []
    if condition.values:
        parts.append(build(getter, condition.values, negate=False, **options))
    if condition.not_values:
        parts.append(build(getter, condition.not_values, negate=True, **options))
    return _all_of(parts)


def _all_of(predicates: Sequence[Predicate]) -> Predicate:
    if not predicates:
        return lambda attrs, authn: True
    if len(predicates) == 1:
        return predicates[0]
    items = tuple(predicates)
    return lambda attrs, authn: all(p(attrs, authn) for p in items)


def _any_of(predicates: Sequence[Predicate]) -> Predicate:
    items = tuple(predicates)
    if len(items) == 1:
        return items[0]
    return lambda attrs, authn: any(p(attrs, authn) for p in items)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule as one fast predicate, plus its named parts for explaining a decision."""

    index: int
    matches: Predicate
    # ("from", [fields of source 0, fields of source 1, ...]), ("to", ...), ("when[k]", ...)
    parts: tuple[tuple[str, tuple[tuple[Named, ...], ...]], ...]
    # The "matched" explanation, made on first use when it cannot depend on the request.
    match_text: list[str] = field(default_factory=list, compare=False, repr=False)

    def explain_match(self, attrs: RequestAttributes, authn: AuthnResult) -> str:
        """`explain` for a rule known to match. When each part has one alternative (the usual
        case) the text cannot depend on the request, so it is made once per rule."""
        if not all(len(alternatives) == 1 for _, alternatives in self.parts):
            return self.explain(attrs, authn)
        if not self.match_text:
            self.match_text.append(self.explain(attrs, authn))
        return self.match_text[0]

    def explain(self, attrs: RequestAttributes, authn: AuthnResult) -> str:
        """Which parts matched, or the first that did not, e.g.
        `rules[0]: from[0].source.notRequestPrincipals and to[0].operation.notPaths matched`
        or `rules[1]: to did not match (to[0].operation.methods)`."""
        matched: list[str] = []
        for part, alternatives in self.parts:
            hit = _first_matching(part, alternatives, attrs, authn)
            if hit is None:
                miss = _first_miss(part, alternatives, attrs, authn)
                return f"rules[{self.index}]: {part} did not match ({miss})"
            matched.append(hit)
        return f"rules[{self.index}]: " + (
            " and ".join(matched) + " matched" if matched else "empty rule matches every request"
        )


def _first_matching(
    part: str,
    alternatives: tuple[tuple[Named, ...], ...],
    attrs: RequestAttributes,
    authn: AuthnResult,
) -> str | None:
    for number, fields in enumerate(alternatives):
        if all(predicate(attrs, authn) for _, predicate in fields):
            names = ",".join(name for name, _ in fields) or "{}"
            return f"{part}[{number}].{names}" if part in ("from", "to") else part
    return None


def _first_miss(
    part: str,
    alternatives: tuple[tuple[Named, ...], ...],
    attrs: RequestAttributes,
    authn: AuthnResult,
) -> str:
    misses = []
    for number, fields in enumerate(alternatives):
        for name, predicate in fields:
            if not predicate(attrs, authn):
                misses.append(
                    f"{part}[{number}].{name}" if part in ("from", "to") else f"{part}.{name}"
                )
                break
    return ", ".join(misses)


_KIND = {"from": "source", "to": "operation"}


def compile_rule(rule: Rule, index: int) -> CompiledRule:
    parts: list[tuple[str, tuple[tuple[Named, ...], ...]]] = []
    if rule.sources:
        sources = tuple(
            tuple((f"source.{n}", p) for n, p in _field_predicates(s, _SOURCE_FIELDS))
            for s in rule.sources
        )
        parts.append(("from", sources))
    if rule.operations:
        operations = tuple(
            tuple((f"operation.{n}", p) for n, p in _field_predicates(o, _OPERATION_FIELDS))
            for o in rule.operations
        )
        parts.append(("to", operations))
    for number, condition in enumerate(rule.conditions):
        parts.append((f"when[{number}]", (((condition.key, _condition_predicate(condition)),),)))
    predicate = _all_of(
        [_any_of([_all_of([p for _, p in fields]) for fields in alts]) for _, alts in parts]
    )
    return CompiledRule(index, predicate, tuple(parts))
