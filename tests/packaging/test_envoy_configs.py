"""The shipped Envoy configs are valid for the Envoy we test with, fail closed, and take
IPv4 and IPv6 clients (docker/README.md, IPv6, has the measurements behind the choice)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from extauthz.rig.envoy_config import localize
from extauthz.rig.rig import REPO_ENVOY_DIR, find_binary

CONFIGS = sorted(REPO_ENVOY_DIR.glob("*.yaml"))


def _ext_authz(config: dict[str, Any]) -> dict[str, Any]:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    [ext_authz] = [
        f
        for f in hcm["typed_config"]["http_filters"]
        if f["name"] == "envoy.filters.http.ext_authz"
    ]
    return dict(ext_authz["typed_config"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_envoy_validates(path: Path) -> None:
    done = subprocess.run([find_binary("envoy"), "--mode", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_ext_authz_fails_closed_over_grpc(path: Path) -> None:
    ext_authz = _ext_authz(yaml.safe_load(path.read_text()))
    assert ext_authz["failure_mode_allow"] is False
    assert ext_authz["transport_api_version"] == "V3"
    assert ext_authz["grpc_service"]["envoy_grpc"]["cluster_name"] == "extauthz"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_listeners_take_ipv4_and_ipv6_clients(path: Path) -> None:
    # "::" with ipv4_compat starts in a container whose IPv6 is switched off (Docker's default
    # network) and serves IPv4 there; only a kernel without IPv6 refuses it.
    for listener in yaml.safe_load(path.read_text())["static_resources"]["listeners"]:
        socket_address = listener["address"]["socket_address"]
        assert (socket_address["address"], socket_address.get("ipv4_compat")) == ("::", True)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_dns_clusters_prefer_ipv4(path: Path) -> None:
    # On a dual-stack network a service name resolves to both families; Envoy's default
    # (AUTO) takes IPv6 and an app bound to 0.0.0.0 refuses it: every request a 503.
    for cluster in yaml.safe_load(path.read_text())["static_resources"]["clusters"]:
        if cluster.get("type") in ("STRICT_DNS", "LOGICAL_DNS"):
            assert cluster.get("dns_lookup_family") == "V4_PREFERRED", cluster["name"]


def test_localize_rewrites_only_addresses(tmp_path: Path) -> None:
    source = REPO_ENVOY_DIR / "gateway.yaml"
    local = localize(source, 1111, 2222, {"extauthz": 3333, "upstream": 4444})
    original = yaml.safe_load(source.read_text())
    assert _ext_authz(local) == _ext_authz(original)
    ports = [
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for c in local["static_resources"]["clusters"]
        for g in c["load_assignment"]["endpoints"]
        for e in g["lb_endpoints"]
    ]
    assert ports == [3333, 4444]
    # The rig's listener is IPv4 loopback, without the shipped "::"'s ipv4_compat.
    [listener] = local["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 1111}
    with pytest.raises(ValueError, match="no cluster named nope"):
        localize(source, 1, 2, {"nope": 3})
