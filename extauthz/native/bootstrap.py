"""The Envoy-native twin of one workload: its filters and clusters, and a runnable bootstrap
around them. Pure: the keys of remote rules are resolved by the caller."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from extauthz.config.resources import AuthorizationPolicy, RequestAuthentication
from extauthz.native.jwt_authn import KeyResolver, jwt_filter
from extauthz.native.rbac import rbac_filters

ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    ".HttpConnectionManager"
)
UPSTREAM_CLUSTER = "upstream"


@dataclass(frozen=True, slots=True)
class NativeConfig:
    http_filters: tuple[dict[str, Any], ...]  # before the router, in istiod's order
    clusters: tuple[dict[str, Any], ...]  # what the filters refer to
    warnings: tuple[str, ...]  # what Envoy cannot do as extauthz does, for stderr

    def filters_document(self) -> dict[str, Any]:
        """`--format filters`: exactly the two keys a user splices into their own HCM."""
        return {"http_filters": list(self.http_filters), "clusters": list(self.clusters)}


def native_config(
    authns: Sequence[RequestAuthentication],
    policies: Sequence[AuthorizationPolicy],
    resolve_keys: KeyResolver,
    remote_jwks: bool = False,
) -> NativeConfig:
    """The filters istiod would put before the router of a workload to which exactly these
    resources apply: jwt_authn first, then the RBAC filters."""
    jwt = jwt_filter(authns, resolve_keys, remote_jwks)
    rbac, rbac_warnings = rbac_filters(policies)
    filters = ([jwt.filter] if jwt.filter else []) + list(rbac)
    return NativeConfig(tuple(filters), jwt.clusters, (*jwt.warnings, *rbac_warnings))


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def bootstrap(
    native: NativeConfig,
    listen: tuple[str, int],
    upstream: tuple[str, int],
    admin: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """A complete bootstrap: one listener with Istio's HCM path settings and the filters, a
    route for every path to `upstream`, and the clusters."""
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "extauthz_native",
        # Istio's mesh default path normalization (BASE), as the shipped envoy/ configs have.
        "normalize_path": True,
        "merge_slashes": False,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        # The listener is the edge, as in envoy/gateway.yaml: the client is the peer.
        "use_remote_address": True,
        "route_config": {
            "name": "native",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": UPSTREAM_CLUSTER}}],
                }
            ],
        },
        "http_filters": [*native.http_filters, ROUTER],
    }
    upstream_cluster = {
        "name": UPSTREAM_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": UPSTREAM_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(*upstream)}}]}],
        },
    }
    config: dict[str, Any] = {
        "static_resources": {
            "listeners": [
                {
                    "name": "native",
                    "address": _address(*listen),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [upstream_cluster, *native.clusters],
        }
    }
    if admin is not None:
        config["admin"] = {"address": _address(*admin)}
    return config
