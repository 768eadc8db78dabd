"""AuthorizationPolicy through a real Envoy: path normalization under Istio's BASE and
MERGE_SLASHES settings, IP blocks from the peer and from XFF, hosts with ports, a claims
condition and a dry-run policy."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from extauthz.rig.demo import Answer, http_get
from extauthz.rig.rig import SAMPLES, Rig
from extauthz.rig.tokens import SAMPLE_ISSUER, mint

pytestmark = pytest.mark.e2e

POLICIES = (
    (SAMPLES / "gateway-policies.yaml").read_text().split("---")[0]
    + """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin", "/admin/*"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: networks, namespace: istio-system}
spec:
  action: DENY
  rules:
  - from:
    - source: {remoteIpBlocks: ["203.0.113.0/24"]}
  - from:
    - source: {ipBlocks: ["127.0.0.2/32"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: hosts, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to:
    - operation: {hosts: ["blocked.example.com"], paths: ["/hosts"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: banned-group, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/claims"]}
    when:
    - key: request.auth.claims[groups]
      values: ["banned"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: would-deny
  namespace: istio-system
  annotations: {istio.io/dry-run: "true"}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/dry"]}
"""
)

BASE: dict[str, object] = {}  # the shipped config: normalize_path, slashes kept
MERGE_SLASHES = {"merge_slashes": True}


def _rig(tmp_path_factory: pytest.TempPathFactory, hcm: dict[str, object]) -> Iterator[Rig]:
    workdir = Path(tmp_path_factory.mktemp("authz"))
    policies = workdir / "policies.yaml"
    policies.write_text(POLICIES)
    # One trusted proxy in front of Envoy: remote.ip is the client that proxy saw.
    with Rig(
        workdir,
        gateway_policies=policies,
        gateway_hcm={**hcm, "xff_num_trusted_hops": 1},
        extauthz_args=("--xff-num-trusted-hops", "1"),
    ) as rig:
        yield rig


@pytest.fixture(scope="module")
def base_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    yield from _rig(tmp_path_factory, BASE)


@pytest.fixture(scope="module")
def merge_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    yield from _rig(tmp_path_factory, MERGE_SLASHES)


def raw_get(
    rig: Rig, path: str, headers: dict[str, str] | None = None, source: str = "127.0.0.1"
) -> Answer:
    """A request with the path sent exactly as written (no client-side normalization)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", rig.ports.gateway, timeout=5, source_address=(source, 0)
    )
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return Answer(
            response.status,
            response.read().decode(errors="replace"),
            {k.lower(): v for k, v in response.getheaders()},
        )
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "/admin",
        "/admin/x",
        "/./admin",
        "/x/../admin",
        "/%61dmin",
        "/admin/./x",
        "/admin/%2e%2e/admin",
    ],
)
@pytest.mark.parametrize("setting", ["base", "merge"])
def test_normalized_paths_cannot_dodge_a_deny(
    request: pytest.FixtureRequest, setting: str, path: str
) -> None:
    rig: Rig = request.getfixturevalue(f"{setting}_rig")
    answer = raw_get(rig, path)
    assert (answer.status, answer.body) == (403, "RBAC: access denied")


@pytest.mark.parametrize(
    ("path", "base", "merge"),
    [
        # Istio's default (BASE) keeps double slashes, so "//admin" is not "/admin": the deny
        # does not apply. MERGE_SLASHES closes that gap; that is why Istio offers it.
        ("//admin", 200, 403),
        ("/admin//x", 403, 403),
        # Paths are case-sensitive under every setting: "/ADMIN" is another path.
        ("/ADMIN", 200, 200),
    ],
)
def test_slashes_and_case_under_each_setting(
    base_rig: Rig, merge_rig: Rig, path: str, base: int, merge: int
) -> None:
    assert raw_get(base_rig, path).status == base
    assert raw_get(merge_rig, path).status == merge


def test_remote_ip_blocks_use_the_trusted_xff_entry(base_rig: Rig) -> None:
    assert raw_get(base_rig, "/net", {"X-Forwarded-For": "203.0.113.7"}).status == 403
    assert raw_get(base_rig, "/net", {"X-Forwarded-For": "198.51.100.1"}).status == 200
    # A client cannot pick its remote.ip: with one trusted hop only the entry next to the
    # proxy's own counts.
    assert raw_get(base_rig, "/net", {"X-Forwarded-For": "203.0.113.7, 198.51.100.1"}).status == 200
    assert raw_get(base_rig, "/net").status == 200


def test_ip_blocks_use_envoys_downstream_peer(base_rig: Rig) -> None:
    assert raw_get(base_rig, "/net", source="127.0.0.2").status == 403
    assert raw_get(base_rig, "/net", source="127.0.0.3").status == 200


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("blocked.example.com", 403),
        # istiod matches :authority exactly as sent, port included (measured: Envoy 1.40).
        ("blocked.example.com:8080", 200),
        ("BLOCKED.Example.com", 403),
        ("ok.example.com", 200),
    ],
)
def test_hosts_match_without_case_and_with_their_port(
    base_rig: Rig, host: str, status: int
) -> None:
    assert raw_get(base_rig, "/hosts", {"Host": host}).status == status


@pytest.mark.parametrize(("groups", "status"), [(["dev", "banned"], 403), (["dev"], 200)])
def test_claims_condition(base_rig: Rig, groups: list[str], status: int) -> None:
    token = mint(
        {"iss": SAMPLE_ISSUER, "sub": "u", "groups": groups, "exp": int(time.time()) + 600}
    )
    assert raw_get(base_rig, "/claims", {"Authorization": f"Bearer {token}"}).status == status


def decision_lines(
    rig: Rig, wanted: Callable[[dict[str, Any]], bool], timeout_s: float = 3.0
) -> list[dict[str, Any]]:
    """The gateway extauthz's decision lines that `wanted` picks, once there is one: lines
    are written by a background thread every 50 ms, so a request's line comes a little later."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = (rig.workdir / "extauthz-gateway.log").read_text()
        lines = [json.loads(line) for line in log.splitlines() if line.startswith('{"time":')]
        found = [line for line in lines if wanted(line)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_dry_run_policy_is_reported_not_enforced(base_rig: Rig) -> None:
    assert raw_get(base_rig, "/dry").status == 200
    with urllib.request.urlopen(
        f"http://127.0.0.1:{base_rig.ports.gateway_http}/metrics", timeout=5
    ) as response:
        metrics = response.read().decode()
    assert (
        'extauthz_policy_matches_total{action="DENY",mode="dry_run",policy="istio-system/would-deny"} 1.0'
        in metrics
    )
    dry = decision_lines(base_rig, lambda line: line["path"] == "/dry")
    assert (
        dry
        and dry[-1]["decision"] == "allow"
        and dry[-1]["dry_run"] == ["DENY istio-system/would-deny rules[0]"]
    )


def test_denial_is_explained_in_the_log_not_to_the_client(base_rig: Rig) -> None:
    answer = http_get(f"{base_rig.gateway_url}/admin/x")
    assert answer.body == "RBAC: access denied"
    last = decision_lines(base_rig, lambda line: line["path"] == "/admin/x")[-1]
    assert last["policy"] == "istio-system/no-admin"
    assert last["detail"] == "rules[0]: to[0].operation.paths matched"
