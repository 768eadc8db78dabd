from __future__ import annotations

import time
from types import MappingProxyType

from extauthz.attributes import RequestAttributes
from extauthz.authn.cache import TokenCache
from extauthz.decision import decide
from extauthz.rig.rig import SAMPLES
from extauthz.rig.tokens import SAMPLE_ISSUER, mint
from extauthz.server.envoy_api import Responses
from tests.support.config import snapshot_from

SNAPSHOT = snapshot_from(
    (SAMPLES / "gateway-policies.yaml").read_text(),
    namespace="istio-system",
    labels="app=istio-ingressgateway",
)
RESPONSES = Responses()  # as one service keeps them


def _response(token: str, cache: TokenCache, path: str = "/api/v1/products/0") -> object:
    attrs = RequestAttributes(
        path=path, headers=MappingProxyType({"authorization": f"Bearer {token}"})
    )
    return RESPONSES.get(decide(attrs, SNAPSHOT, lambda uri, now: None, int(time.time()), cache))


def test_repeated_outcomes_reuse_one_response_and_distinct_ones_do_not() -> None:
    cache = TokenCache()
    alice = mint({"iss": SAMPLE_ISSUER, "sub": "alice", "exp": int(time.time()) + 600})
    bob = mint({"iss": SAMPLE_ISSUER, "sub": "bob", "exp": int(time.time()) + 600})
    first = _response(alice, cache)
    assert _response(alice, cache) is first
    other = _response(bob, cache)
    assert other is not first
    fields = other.dynamic_metadata.fields  # type: ignore[attr-defined]
    assert fields["request_principal"].string_value == f"{SAMPLE_ISSUER}/bob"
    assert (
        first.dynamic_metadata.fields["request_principal"].string_value == f"{SAMPLE_ISSUER}/alice"
    )  # type: ignore[attr-defined]
    # Answers to invalid tokens name each path in their realm: never shared.
    bad = alice[:-6] + "AAAAAA"
    one, two = _response(bad, cache, "/a"), _response(bad, cache, "/b")
    assert one.denied_response.headers[0].header.value.endswith('/a", error="invalid_token"')  # type: ignore[attr-defined]
    assert two.denied_response.headers[0].header.value.endswith('/b", error="invalid_token"')  # type: ignore[attr-defined]
