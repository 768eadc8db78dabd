"""The jwt_authn filter envoy-config writes: istiod's layout (policy_applier.go), checked
field by field. That Envoy accepts it, and answers as extauthz does, is shown elsewhere
(test_envoy_validate.py, tests/e2e/test_native_seed.py, tests/conformance)."""

from __future__ import annotations

import json
from typing import Any

from extauthz.config.parse import parse_documents
from extauthz.config.resources import JWTRule, RequestAuthentication
from extauthz.native.jwt_authn import (
    JWT_FILTER,
    PUBLIC_ONLY_JWKS,
    jwks_cluster_name,
    jwt_filter,
    ordered_rules,
)
from tests.support.tokens import jwks_of, rsa_key

JWKS = jwks_of(rsa_key())


def _authns(yaml_text: str) -> list[RequestAuthentication]:
    return list(parse_documents(yaml_text, "test.yaml", "foo").request_authentications)


def _ra(name: str, *rules: str) -> str:
    body = "".join(f"\n  - {rule}" for rule in rules)
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: {name}, namespace: foo}}
spec:
  jwtRules:{body}
---"""


def _no_fetch(rule: JWTRule) -> str | None:
    raise AssertionError(f"nothing should be fetched for {rule.issuer}")


def _config(authns: list[RequestAuthentication], **kwargs: Any) -> dict[str, Any]:
    made = jwt_filter(authns, kwargs.pop("resolve", _no_fetch), **kwargs)
    assert made.filter is not None
    assert made.filter["name"] == JWT_FILTER
    config: dict[str, Any] = made.filter["typed_config"]
    return config


def test_no_rules_no_filter() -> None:
    made = jwt_filter([], _no_fetch)
    assert (made.filter, made.clusters, made.warnings) == (None, (), ())


def test_one_rule_is_provider_or_allow_missing_with_istiods_fixed_fields() -> None:
    authns = _authns(_ra("a", f"{{issuer: iss-a, jwks: {json.dumps(JWKS)}}}"))
    config = _config(authns)
    assert config["providers"] == {
        "origins-0": {
            "issuer": "iss-a",
            "payload_in_metadata": "payload",
            "normalize_payload_in_metadata": {"space_delimited_claims": ["permission", "scope"]},
            "local_jwks": {"inline_string": JWKS},
        }
    }
    assert config["rules"] == [
        {
            "match": {"prefix": "/"},
            "requires": {
                "requires_any": {
                    "requirements": [{"provider_name": "origins-0"}, {"allow_missing": {}}]
                }
            },
        }
    ]
    assert config["bypass_cors_preflight"] is True


def test_several_rules_sorted_by_issuer_across_resources_and_combined_as_istiod_does() -> None:
    jwks = json.dumps(JWKS)
    authns = _authns(
        _ra("first", f"{{issuer: zeta, jwks: {jwks}}}", f"{{issuer: alpha, jwks: {jwks}}}")
        + _ra("second", f"{{issuer: mid, jwks: {jwks}}}", f"{{issuer: alpha, jwks: {jwks}, audiences: [x]}}")
    )  # fmt: skip
    assert [(ref, rule.issuer) for ref, rule in ordered_rules(authns)] == [
        ("foo/first jwtRules[1]", "alpha"),
        ("foo/second jwtRules[1]", "alpha"),  # stable: resource order breaks the tie
        ("foo/second jwtRules[0]", "mid"),
        ("foo/first jwtRules[0]", "zeta"),
    ]
    config = _config(authns)
    assert [p["issuer"] for p in config["providers"].values()] == ["alpha", "alpha", "mid", "zeta"]
    assert config["providers"]["origins-1"]["audiences"] == ["x"]
    names = [f"origins-{i}" for i in range(4)]
    each = [
        {"requires_any": {"requirements": [{"provider_name": n}, {"allow_missing": {}}]}}
        for n in names
    ]
    assert config["rules"][0]["requires"] == {
        "requires_any": {
            "requirements": [
                *({"provider_name": n} for n in names),
                {"requires_all": {"requirements": each}},
            ]
        }
    }


def test_locations_forwarding_and_output_headers() -> None:
    rule = (
        f"{{issuer: i, jwks: {json.dumps(JWKS)}, forwardOriginalToken: true, "
        "fromHeaders: [{name: x-jwt}, {name: Authorization, prefix: 'Token '}], "
        "fromParams: [tok], fromCookies: [session], outputPayloadToHeader: x-payload, "
        "outputClaimToHeaders: [{header: x-sub, claim: sub}, {header: x-groups, claim: groups}]}"
    )
    provider = _config(_authns(_ra("a", rule)))["providers"]["origins-0"]
    assert provider["forward"] is True
    assert provider["from_headers"] == [
        {"name": "x-jwt"},
        {"name": "authorization", "value_prefix": "Token "},  # names are read lower-case
    ]
    assert provider["from_params"] == ["tok"]
    assert provider["from_cookies"] == ["session"]
    assert provider["forward_payload_header"] == "x-payload"
    assert provider["claim_to_headers"] == [
        {"header_name": "x-sub", "claim_name": "sub"},
        {"header_name": "x-groups", "claim_name": "groups"},
    ]


def test_jwks_uri_is_fetched_and_inlined_by_default() -> None:
    seen: list[str] = []

    def resolve(rule: JWTRule) -> str:
        seen.append(rule.jwks_uri)
        return JWKS

    authns = _authns(_ra("a", "{issuer: i, jwksUri: 'https://keys.example/jwks.json'}"))
    provider = _config(authns, resolve=resolve)["providers"]["origins-0"]
    assert seen == ["https://keys.example/jwks.json"]
    assert provider["local_jwks"] == {"inline_string": JWKS}


def test_keys_that_cannot_be_fetched_fail_closed_with_a_warning() -> None:
    authns = _authns(_ra("a", "{issuer: i, jwksUri: 'http://127.0.0.1:9/jwks'}"))
    made = jwt_filter(authns, lambda rule: None)
    assert made.filter is not None
    provider = made.filter["typed_config"]["providers"]["origins-0"]
    assert provider["local_jwks"] == {"inline_string": PUBLIC_ONLY_JWKS}
    assert len(made.warnings) == 1
    assert "foo/a jwtRules[0]" in made.warnings[0]
    assert "http://127.0.0.1:9/jwks" in made.warnings[0]
    keys = json.loads(PUBLIC_ONLY_JWKS)["keys"]
    assert [k["kty"] for k in keys] == ["RSA"] and "d" not in keys[0]


def test_remote_mode_gives_envoy_the_uri_and_one_cluster_per_host() -> None:
    authns = _authns(
        _ra(
            "a",
            "{issuer: i1, jwksUri: 'https://keys.example/a.json', timeout: 2s}",
            "{issuer: i2, jwksUri: 'https://keys.example/b.json'}",
            "{issuer: i3, jwksUri: 'http://127.0.0.1:8081/c.json'}",
        )
    )
    made = jwt_filter(authns, _no_fetch, remote=True)
    assert made.filter is not None
    providers = made.filter["typed_config"]["providers"]
    assert providers["origins-0"]["remote_jwks"] == {
        "http_uri": {
            "uri": "https://keys.example/a.json",
            "cluster": "jwks|keys.example|443",
            "timeout": "2s",
        },
        "cache_duration": "300s",
    }
    assert providers["origins-1"]["remote_jwks"]["http_uri"]["timeout"] == "5s"
    assert [c["name"] for c in made.clusters] == ["jwks|keys.example|443", "jwks|127.0.0.1|8081"]
    https, http = made.clusters
    assert https["transport_socket"]["typed_config"]["sni"] == "keys.example"
    assert "transport_socket" not in http
    assert jwks_cluster_name("http://h/x") == "jwks|h|80"


def test_remote_mode_still_inlines_oidc_discovery_rules() -> None:
    # istiod hands Envoy a remote URI only for an explicit jwksUri.
    authns = _authns(_ra("a", "{issuer: 'https://issuer.example'}"))
    made = jwt_filter(authns, lambda rule: JWKS, remote=True)
    assert made.filter is not None
    assert made.filter["typed_config"]["providers"]["origins-0"]["local_jwks"] == {
        "inline_string": JWKS
    }
    assert made.clusters == ()


def test_space_delimited_claims_are_the_sorted_union_with_istiods_defaults() -> None:
    rule = f"{{issuer: i, jwks: {json.dumps(JWKS)}, spaceDelimitedClaims: [roles, scope]}}"
    provider = _config(_authns(_ra("a", rule)))["providers"]["origins-0"]
    assert provider["normalize_payload_in_metadata"] == {
        "space_delimited_claims": ["permission", "roles", "scope"]
    }
