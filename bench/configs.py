"""Envoy configurations for the benchmark, all derived from the shipped envoy/gateway.yaml.

Every configuration keeps the gateway's listener, HTTP connection manager settings (path
normalization, use_remote_address), route and router; only the auth filters and the
clusters change. So the configurations differ in exactly what they are meant to compare:

  no_auth(upstream=None)  (a) no auth filter, route answered by `direct_response` 200
  no_auth(upstream=N)     (a) no auth filter, routed to the upstream
  native_jwt(...)         (b) jwt_authn + rbac, as Istio compiles the sample policies
  ext_authz(...)          (c)/(d) the shipped gateway.yaml, unchanged but for addresses
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import yaml

from extauthz.rig.envoy_config import localize
from extauthz.rig.rig import REPO_ENVOY_DIR, find_binary

GATEWAY = REPO_ENVOY_DIR / "gateway.yaml"
SAMPLE_ISSUER = "testing@secure.istio.io"
# Istio names jwt_authn providers after the rule index and puts every verified payload
# under one metadata key (filters.EnvoyJwtFilterPayload in istio/istio).
ISTIO_PROVIDER = "origins-0"
ISTIO_PAYLOAD_KEY = "payload"
JWT_AUTHN = "envoy.filters.http.jwt_authn"
EXCLUDED_PATH = "/productpage"


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    typed: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def _router(config: dict[str, Any]) -> dict[str, Any]:
    [router] = [f for f in _hcm(config)["http_filters"] if f["name"] == "envoy.filters.http.router"]
    return dict(router)


def _keep_clusters(config: dict[str, Any], names: set[str]) -> None:
    resources = config["static_resources"]
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] in names]


def _set_filters(config: dict[str, Any], filters: list[dict[str, Any]]) -> None:
    hcm = _hcm(config)
    hcm["http_filters"] = [*filters, _router(config)]


def ext_authz(listener: int, admin: int, authorizer: int, upstream: int) -> dict[str, Any]:
    """(c) and (d): the shipped gateway, pointed at an authorizer and the upstream."""
    return localize(GATEWAY, listener, admin, {"extauthz": authorizer, "upstream": upstream})


def no_auth(listener: int, admin: int, upstream: int | None) -> dict[str, Any]:
    """(a): no auth filter; without an upstream every request gets a `direct_response` 200,
    which measures Envoy (and the load generator) alone."""
    if upstream is None:
        config = localize(GATEWAY, listener, admin, {})
        _keep_clusters(config, set())
        route = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"][0]
        route.pop("route")
        route["direct_response"] = {"status": 200, "body": {"inline_string": "ok\n"}}
    else:
        config = localize(GATEWAY, listener, admin, {"upstream": upstream})
        _keep_clusters(config, {"upstream"})
    _set_filters(config, [])
    return config


def jwt_authn_filter(jwks: str, issuer: str = SAMPLE_ISSUER) -> dict[str, Any]:
    """What Istio generates for one RequestAuthentication jwtRule with inline `jwks`:
    the token is optional (requires_any{provider, allow_missing}), an invalid one is a 401,
    the verified payload goes to the dynamic metadata for RBAC."""
    return {
        "name": JWT_AUTHN,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3"
            ".JwtAuthentication",
            "providers": {
                ISTIO_PROVIDER: {
                    "issuer": issuer,
                    "local_jwks": {"inline_string": jwks},
                    "forward": False,  # forwardOriginalToken defaults to false
                    "payload_in_metadata": ISTIO_PAYLOAD_KEY,
                }
            },
            "rules": [
                {
                    "match": {"prefix": "/"},
                    "requires": {
                        "requires_any": {
                            "requirements": [
                                {"provider_name": ISTIO_PROVIDER},
                                {"allow_missing": {}},
                            ]
                        }
                    },
                }
            ],
            "bypass_cors_preflight": True,
        },
    }


def _claim_present(claim: str) -> dict[str, Any]:
    # Istio's requestPrincipals "*" is `iss` and `sub` both matching the regex ".+" in the
    # jwt_authn payload metadata (requestPrincipalGenerator in istio/istio). Istio still
    # writes Principal.metadata, which Envoy 1.40 accepts with a deprecation warning
    # (sourced_metadata replaces it); we keep Istio's shape.
    return {
        "metadata": {
            "filter": JWT_AUTHN,
            "path": [{"key": ISTIO_PAYLOAD_KEY}, {"key": claim}],
            "value": {"string_match": {"safe_regex": {"regex": ".+"}}},
        }
    }


def rbac_deny_filter() -> dict[str, Any]:
    """AuthorizationPolicy test-exclude: DENY when notRequestPrincipals ["*"] and
    notPaths ["/productpage"], in the shape Istio's RBAC generator produces."""
    any_principal = {"and_ids": {"ids": [_claim_present("iss"), _claim_present("sub")]}}
    excluded_path = {"url_path": {"path": {"exact": EXCLUDED_PATH}}}
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {
                "action": "DENY",
                "policies": {
                    "ns[istio-system]-policy[test-exclude]-rule[0]": {
                        "permissions": [
                            {
                                "and_rules": {
                                    "rules": [
                                        {"not_rule": {"or_rules": {"rules": [excluded_path]}}}
                                    ]
                                }
                            }
                        ],
                        "principals": [
                            {"and_ids": {"ids": [{"not_id": {"or_ids": {"ids": [any_principal]}}}]}}
                        ],
                    }
                },
            },
        },
    }


def native_jwt(listener: int, admin: int, upstream: int, jwks: str) -> dict[str, Any]:
    """(b): Envoy's own jwt_authn + rbac filters, equivalent to the sample policies."""
    config = localize(GATEWAY, listener, admin, {"upstream": upstream})
    _keep_clusters(config, {"upstream"})
    _set_filters(config, [jwt_authn_filter(jwks), rbac_deny_filter()])
    return config


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(copy.deepcopy(config), sort_keys=False))
    return path


def validate(path: Path, timeout: float = 60.0) -> str | None:
    """Run `envoy --mode validate`; None when Envoy accepts the file, else its complaint."""
    done = subprocess.run(
        [find_binary("envoy"), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode == 0:
        return None
    return (done.stderr or done.stdout)[-2000:]
