"""Forged tokens whose unverified header carries a huge `kid`: every one is a 401, and a real
`extauthz serve` keeps none of their text. Before, the decision-log fragment of each 401
(its kid JSON-escaped, 12 characters an emoji) was kept in a 4,096-entry cache with no size
bound: 4,000 such Checks took RSS from 68 to 774 MiB. The header cache kept 256 of them
whole too."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc

from extauthz.rig.rig import SAMPLES
from tests.reliability.support import (
    SAMPLE_POLICIES,
    ServeProcess,
    answered_status,
    sample_request,
    wait_for,
)

FLOOD = 1_500
EMOJI_PER_KID = 11_000  # ~59 KB tokens: under the 64 KiB token limit
# Measured after the fix: +1 to +3 MiB over the flood. Before it the same flood kept
# ~130 KB per Check in the decision-log fragments (~190 MiB for 1,500), and ~100 KB per
# header in the 256-entry header cache (+25 MiB); 16 MiB catches either.
GROWTH_MIB = 16


def forged_token(index: int) -> str:
    """The demo token's payload and signature under a header naming a new, huge kid."""
    _, payload, signature = (SAMPLES / "demo.jwt").read_text().strip().split(".")
    kid = f"{index:06d}" + "\U0001f600" * EMOJI_PER_KID
    header = json.dumps({"alg": "RS256", "kid": kid}, ensure_ascii=False)
    encoded = base64.urlsafe_b64encode(header.encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"


def test_a_flood_of_huge_forged_kids_is_rejected_and_kept_nowhere(tmp_path: Path) -> None:
    with (
        ServeProcess(tmp_path, [SAMPLE_POLICIES]) as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        check = external_auth_pb2_grpc.AuthorizationStub(channel).Check

        def send(index: int) -> int:
            request = sample_request("/productpage")
            request.attributes.request.http.headers["authorization"] = (
                f"Bearer {forged_token(index)}"
            )
            return answered_status(check(request, timeout=30))

        for index in range(-20, 0):  # warm up
            assert send(index) == 401
        before = server.rss_mib()
        for index in range(FLOOD):
            assert send(index) == 401, index
        after = server.rss_mib()
        wait_for(
            lambda: len(server.decision_lines()) >= FLOOD + 20,
            f"{FLOOD + 20} decision lines",
        )
        lines = server.decision_lines()
        assert all(line["status"] == 401 and len(line["kid"]) <= 256 for line in lines)
        assert server.is_running and server.metric("extauthz_check_errors_total") == 0
        print(f"\nRSS (MiB): {before:.1f} -> {after:.1f} over {FLOOD} forged kids")
        assert after - before < GROWTH_MIB
