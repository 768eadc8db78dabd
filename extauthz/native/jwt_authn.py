"""The RequestAuthentications of one workload as Envoy's own jwt_authn filter, laid out as
istiod lays it out (convertToEnvoyJwtConfig in pilot/pkg/security/authn/policy_applier.go):

- every JWTRule of every RequestAuthentication that applies, stable-sorted by issuer, is one
  provider named `origins-<i>`, with the payload in the filter's metadata under `payload`
  (what the RBAC filters read for request principals and claims);
- one requirement for every path: `OR{P, allow_missing}` for a single rule, and
  `OR{P1..Pn, AND{OR{P1, allow_missing}, ..., OR{Pn, allow_missing}}}` for several;
- CORS preflight requests bypass the filter;
- keys are inlined (istiod fetches each `jwksUri` and OIDC discovery document itself, and
  inlines a key nobody holds the private half of when that fails, so tokens fail closed), or,
  with remote keys, Envoy fetches a `jwksUri` through a cluster of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from extauthz.config.resources import JWTRule, RequestAuthentication

JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
PAYLOAD_METADATA_KEY = "payload"
# istiod's defaults for normalize_payload_in_metadata (buildSpaceDelimitedClaims).
DEFAULT_SPACE_DELIMITED_CLAIMS = ("permission", "scope")
DEFAULT_TIMEOUT_SECONDS = 5.0
REMOTE_CACHE_SECONDS = 300  # istiod's cache_duration for remote_jwks
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"

# What istiod inlines when it cannot fetch a rule's keys: a public RSA key whose private half
# was generated for extauthz and discarded at once, so no token can ever verify against it.
PUBLIC_ONLY_JWKS = (
    '{"keys":[{"kty":"RSA","e":"AQAB","n":"nQqfZ4wZfyz04WTuwPAVfjFxS9L2WJyRGnhXtv4DtiBGa4wE'
    "OC7LK7VGVvtVP0FZfaFOY4MiOZe351WUzlCxB_hsY7hufizvLjLydHhAnbVQYeA3WFN2DoXLQviy0tRE15OvJE"
    "XvwrcBta6kfUza6C3QrEolZLebBLpA4wexN6SpAW92bmZyjGrjnNk65CXJF4Q-6W0kexWXus3HHVpbi4uFlSqx"
    "BpFZ9kT0GNcBDwa8F_qqCFxC60dgbtg5BEm7KETLyb7apChuj1E4sn4Eo37sowSgAc2wUeykhDMAMyfhgnAIn-"
    '53UV5T8YEPl7_iWzsePUZilsRjD-KeapffHQ"}]}'
)

# Keys for a rule without inline `jwks` in inline mode: the JWKS text, or None when it could
# not be fetched (the rule then gets PUBLIC_ONLY_JWKS and a warning).
KeyResolver = Callable[[JWTRule], "str | None"]


@dataclass(frozen=True, slots=True)
class JwtFilter:
    filter: dict[str, Any] | None  # None when no JWTRule applies: istiod writes no filter
    clusters: tuple[dict[str, Any], ...]  # one per remote jwksUri host
    warnings: tuple[str, ...]


def ordered_rules(authns: Sequence[RequestAuthentication]) -> list[tuple[str, JWTRule]]:
    """(reference, rule) for every JWTRule, stable-sorted by issuer as istiod sorts them."""
    rules = [
        (f"{authn.meta.ref} jwtRules[{index}]", rule)
        for authn in authns
        for index, rule in enumerate(authn.jwt_rules)
    ]
    return sorted(rules, key=lambda pair: pair[1].issuer)


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def space_delimited_claims(rule: JWTRule) -> list[str]:
    listed = rule.space_delimited_claims
    if not listed:
        return list(DEFAULT_SPACE_DELIMITED_CLAIMS)
    return sorted({*listed, *DEFAULT_SPACE_DELIMITED_CLAIMS})


def jwks_cluster_name(uri: str) -> str:
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"jwks|{parts.hostname}|{port}"


def jwks_cluster(uri: str) -> dict[str, Any]:
    """The cluster Envoy fetches a remote jwksUri through; https is verified against the
    system's CA bundle and the URI's host name."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    cluster: dict[str, Any] = {
        "name": jwks_cluster_name(uri),
        "type": "STRICT_DNS",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": jwks_cluster_name(uri),
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": host, "port_value": port}}}}]}
            ],
        },
    }  # fmt: skip
    if https:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
                ".UpstreamTlsContext",
                "sni": host,
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": {"filename": SYSTEM_CA_FILE},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": host}}
                        ],
                    }
                },
            },
        }
    return cluster


def _provider(rule: JWTRule) -> dict[str, Any]:
    provider: dict[str, Any] = {}
    if rule.issuer:
        provider["issuer"] = rule.issuer
    if rule.audiences:
        provider["audiences"] = list(rule.audiences)
    if rule.forward_original_token:
        provider["forward"] = True
    if rule.output_payload_to_header:
        provider["forward_payload_header"] = rule.output_payload_to_header
    provider["payload_in_metadata"] = PAYLOAD_METADATA_KEY
    provider["normalize_payload_in_metadata"] = {
        "space_delimited_claims": space_delimited_claims(rule)
    }
    if rule.output_claim_to_headers:
        provider["claim_to_headers"] = [
            {"header_name": c.header, "claim_name": c.claim} for c in rule.output_claim_to_headers
        ]
    if rule.from_headers:
        provider["from_headers"] = [
            {"name": h.name, **({"value_prefix": h.prefix} if h.prefix else {})}
            for h in rule.from_headers
        ]
    if rule.from_params:
        provider["from_params"] = list(rule.from_params)
    if rule.from_cookies:
        provider["from_cookies"] = list(rule.from_cookies)
    return provider


def _requirement(names: Sequence[str]) -> dict[str, Any]:
    each = [
        {"requires_any": {"requirements": [{"provider_name": name}, {"allow_missing": {}}]}}
        for name in names
    ]
    if len(each) == 1:
        return each[0]
    return {
        "requires_any": {
            "requirements": [
                *({"provider_name": name} for name in names),
                {"requires_all": {"requirements": each}},
            ]
        }
    }


def jwt_filter(
    authns: Sequence[RequestAuthentication],
    resolve_keys: KeyResolver,
    remote: bool = False,
) -> JwtFilter:
    """The jwt_authn filter for a workload to which exactly `authns` apply (in order).

    `resolve_keys` gives the JWKS text of a rule without inline keys in inline mode (and of
    an OIDC-discovery rule in either mode, as istiod only hands Envoy a remote `jwksUri`)."""
    rules = ordered_rules(authns)
    if not rules:
        return JwtFilter(None, (), ())
    providers: dict[str, dict[str, Any]] = {}
    clusters: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for index, (ref, rule) in enumerate(rules):
        provider = _provider(rule)
        timeout = rule.timeout_seconds or DEFAULT_TIMEOUT_SECONDS
        if rule.jwks:
            provider["local_jwks"] = {"inline_string": rule.jwks}
        elif remote and rule.jwks_uri:
            cluster = jwks_cluster(rule.jwks_uri)
            clusters.setdefault(cluster["name"], cluster)
            provider["remote_jwks"] = {
                "http_uri": {
                    "uri": rule.jwks_uri,
                    "cluster": cluster["name"],
                    "timeout": _duration(timeout),
                },
                "cache_duration": _duration(REMOTE_CACHE_SECONDS),
            }
        else:
            text = resolve_keys(rule)
            if text is None:
                where = rule.jwks_uri or f"the OIDC discovery document of {rule.issuer!r}"
                warnings.append(
                    f"{ref}: could not fetch keys from {where}; inlined a key no one can sign "
                    "with, so every token of this rule is rejected (as istiod does)"
                )
                text = PUBLIC_ONLY_JWKS
            provider["local_jwks"] = {"inline_string": text}
        providers[f"origins-{index}"] = provider
    config = {
        "@type": JWT_FILTER_TYPE,
        "providers": providers,
        "rules": [{"match": {"prefix": "/"}, "requires": _requirement(list(providers))}],
        "bypass_cors_preflight": True,
    }
    return JwtFilter(
        {"name": JWT_FILTER, "typed_config": config}, tuple(clusters.values()), tuple(warnings)
    )
