"""Envoy itself accepts every typed config rbac.py writes: one policy set using every
construct, translated and loaded by `envoy --mode validate` in front of a router."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from extauthz.config.resources import (
    AuthorizationPolicy,
    Condition,
    Meta,
    Operation,
    Origin,
    Rule,
    Source,
)
from extauthz.native.rbac import rbac_filters
from extauthz.rig.rig import find_binary

ORIGIN = Origin("every-construct.yaml", 1)

EVERY_SOURCE = Source(
    principals=("cluster.local/ns/a/sa/b", "prefix-*", "*-suffix", "*", "c*/ns/x/sa/y"),
    not_principals=("cluster.local/ns/bad/sa/b",),
    request_principals=("iss/sub", "https://iss.example/*", "*/sub", "*x", "y*", "*", "bare"),
    not_request_principals=("*/banned",),
    namespaces=("ns", "ns-*", "*-ns", "*", "we.ird[ns]"),
    not_namespaces=("kube-system",),
    ip_blocks=("10.0.0.1", "10.1.0.7/16", "2001:db8::1", "::ffff:1.2.3.4"),
    not_ip_blocks=("10.9.0.0/24",),
    remote_ip_blocks=("192.168.0.0/16", "fd00::/8"),
    not_remote_ip_blocks=("192.168.9.9",),
    service_accounts=("sa", "other/sa.1"),
    not_service_accounts=("bad-sa",),
    trust_domains=("cluster.local", "*", "td-*", "*.example"),
    not_trust_domains=("untrusted",),
)
EVERY_OPERATION = Operation(
    hosts=("example.com", "*.example.com", "api.*", "*"),
    not_hosts=("admin.example.com",),
    ports=("80", "8080"),
    not_ports=("9090",),
    methods=("GET", "P*", "*T", "*"),
    not_methods=("DELETE",),
    paths=("/exact", "/prefix/*", "*.png", "*", "/items/{*}", "/files/{**}", "/a/{*}/b/{**}"),
    not_paths=("/admin/{**}",),
)
EVERY_CONDITION = (
    Condition("request.headers[X-Tenant]", ("t1", "t-*", "*-t", "*"), ("blocked",)),
    Condition("source.ip", ("10.0.0.0/8",), ("10.0.0.1",)),
    Condition("remote.ip", ("1.2.3.4",), ("1.2.3.5/32",)),
    Condition("source.namespace", ("ns",), ("other",)),
    Condition("source.principal", ("cluster.local/ns/a/sa/b",), ("*",)),
    Condition("source.serviceAccount", ("ns/sa",), ("sa",)),
    Condition("source.trustDomain", ("cluster.local",), ("td*",)),
    Condition("request.auth.principal", ("iss/sub",), ("*",)),
    Condition("request.auth.audiences", ("aud", "aud-*"), ("*-no",)),
    Condition("request.auth.presenter", ("azp",), ("*",)),
    Condition("request.auth.claims[groups]", ("admin", "dev-*"), ("*-ro",)),
    Condition("request.auth.claims[realm][roles]", ("*",), ("guest",)),
    Condition("destination.ip", ("10.0.0.1", "10.2.0.0/16"), ("10.2.3.4",)),
    Condition("destination.port", ("80", "0"), ("65535",)),
    Condition("connection.sni", ("example.com", "*.example.com", "api.*", "*"), ("x",)),
    Condition("experimental.envoy.filters.http.a[b]", ("v", "[in-list]", "p*", "*"), ("[no]",)),
)


def _policy(name: str, action: str, *rules: Rule, dry_run: bool = False) -> AuthorizationPolicy:
    annotations = {"istio.io/dry-run": "true"} if dry_run else {}
    meta = Meta(name, "foo", annotations)
    return AuthorizationPolicy(meta, ORIGIN, action=action, rules=rules)


FULL_RULE = Rule((EVERY_SOURCE, Source()), (EVERY_OPERATION, Operation()), EVERY_CONDITION)
EVERY_POLICY = [
    _policy("allow", "ALLOW", FULL_RULE, Rule()),
    _policy("allow-dry", "ALLOW", FULL_RULE, dry_run=True),
    _policy("deny", "DENY", FULL_RULE),
    _policy("deny-dry", "DENY", FULL_RULE, dry_run=True),
    _policy("audit", "AUDIT", FULL_RULE),
    _policy("audit-dry", "AUDIT", FULL_RULE, dry_run=True),
    _policy("allow-nothing", "ALLOW"),
    _policy("deny-nothing", "DENY"),
]


def _bootstrap(http_filters: list[dict[str, Any]]) -> dict[str, Any]:
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        },
    }
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "inbound",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
                }
            ]
        },
        "http_filters": [*http_filters, router],
    }
    address = {"socket_address": {"address": "127.0.0.1", "port_value": 1}}
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "inbound",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "upstream",
                    "type": "STATIC",
                    "load_assignment": {
                        "cluster_name": "upstream",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
                    },
                }
            ],
        }
    }


def _envoy() -> str:
    try:
        return find_binary("envoy")
    except RuntimeError as exc:
        pytest.skip(str(exc))


def _validate(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(config))
    command = [_envoy(), "--mode", "validate", "-c", str(path), "--log-level", "error"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_every_construct_is_one_filter_per_action_with_rules_and_shadow_rules() -> None:
    filters, warnings = rbac_filters(EVERY_POLICY)
    assert warnings == []
    configs = [f["typed_config"] for f in filters]
    assert [c.get("rules", {}).get("action", "ALLOW") for c in configs] == ["LOG", "DENY", "ALLOW"]
    assert all("rules" in c and "shadow_rules" in c for c in configs)


def test_envoy_accepts_every_construct(tmp_path: Path) -> None:
    filters, _ = rbac_filters(
        EVERY_POLICY, trust_domain="td1", trust_domain_aliases=("cluster.local",)
    )
    result = _validate(_bootstrap(filters), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]


def test_envoy_rejects_a_broken_filter(tmp_path: Path) -> None:
    """The check above can fail: a matcher Envoy refuses (an empty prefix) is reported."""
    filters, _ = rbac_filters([_policy("allow", "ALLOW", Rule())])
    rules = filters[0]["typed_config"]["rules"]["policies"]["ns[foo]-policy[allow]-rule[0]"]
    rules["permissions"] = [{"header": {"name": ":path", "string_match": {"prefix": ""}}}]
    result = _validate(_bootstrap(filters), tmp_path)
    assert result.returncode != 0
