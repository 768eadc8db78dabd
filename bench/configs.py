"""Envoy configurations for the benchmark, all derived from the shipped envoy/gateway.yaml.

Every configuration keeps the gateway's listener, HTTP connection manager settings (path
normalization, use_remote_address), route and router; only the auth filters and the
clusters change. So the configurations differ in exactly what they are meant to compare:

  no_auth(upstream=None)  (a) no auth filter, route answered by `direct_response` 200
  no_auth(upstream=N)     (a) no auth filter, routed to the upstream
  native(...)             (b) Envoy's own filters for the same policy file, as
                          `extauthz envoy-config --format filters` writes them (istiod's)
  ext_authz(...)          (c)/(d) the shipped gateway.yaml, unchanged but for addresses
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from extauthz.rig.envoy_config import localize
from extauthz.rig.rig import REPO_ENVOY_DIR, find_binary

GATEWAY = REPO_ENVOY_DIR / "gateway.yaml"
# The workload (d) serves and (b) is generated for: the sample gateway.
WORKLOAD_NAMESPACE = "istio-system"
WORKLOAD_LABELS = "app=istio-ingressgateway"


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


def envoy_config_filters(policies: Path) -> dict[str, Any]:
    """`extauthz envoy-config --format filters` for the bench's workload: the filters and
    clusters istiod would give Envoy for the same policy file (see conformance/)."""
    done = subprocess.run(
        [sys.executable, "-m", "extauthz", "envoy-config", "--format", "filters",
         "--config", str(policies), "--namespace", WORKLOAD_NAMESPACE,
         "--labels", WORKLOAD_LABELS],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"extauthz envoy-config failed:\n{done.stderr[-2000:]}")
    document: dict[str, Any] = yaml.safe_load(done.stdout)
    return document


def native(listener: int, admin: int, upstream: int, policies: Path) -> dict[str, Any]:
    """(b): Envoy's own jwt_authn + rbac filters for the policy file (d) enforces."""
    config = localize(GATEWAY, listener, admin, {"upstream": upstream})
    _keep_clusters(config, {"upstream"})
    spliced = envoy_config_filters(policies)
    _set_filters(config, spliced["http_filters"])
    config["static_resources"]["clusters"].extend(spliced.get("clusters", []))
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
