"""What one Check costs inside extauthz, per stage, in microseconds (no network, no Envoy).

    .venv/bin/python bench/authn_cost.py [--iterations N]

Prints a table; asserts nothing. Tokens are minted here with fresh RS256 and ES256 keys.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from envoy.service.auth.v3 import external_auth_pb2
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from extauthz.authn.cache import VerifiedTokenCache
from extauthz.config.compile import compile_snapshot
from extauthz.config.parse import parse_documents
from extauthz.config.workload import Workload
from extauthz.decision import decide
from extauthz.envoy_api import to_attributes, to_response
from extauthz.rig.rig import SAMPLES

ISSUER = "https://bench.example"


def _keys() -> dict[str, tuple[object, dict[str, object]]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "RS256": (rsa_key, {**json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "rs"}),
        "ES256": (ec_key, {**json.loads(ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "es"}),
    }


def _snapshot(jwks: str) -> object:
    policies = (SAMPLES / "gateway-policies.yaml").read_text()
    extra = f"""
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: bench, namespace: istio-system}}
spec:
  jwtRules:
  - issuer: {ISSUER}
    jwks: {json.dumps(jwks)}
"""
    config = parse_documents(policies + extra, "bench.yaml")
    return compile_snapshot(
        config, Workload("istio-system", {"app": "istio-ingressgateway"}), "istio-system"
    )


def _request(token: str) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host = "GET", "/api/v1/products/0", "bench.example"
    http.headers.update({":method": "GET", ":path": "/api/v1/products/0", "user-agent": "bench",
                         "x-request-id": "r", "x-forwarded-proto": "http"})  # fmt: skip
    if token:
        http.headers["authorization"] = f"Bearer {token}"
    return request


def _per_call_us(fn: Callable[[int], object], iterations: int) -> float:
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(iterations):
            fn(i)
        samples.append((time.perf_counter() - start) / iterations * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=2000)
    n = parser.parse_args().iterations
    snapshot_keys = _keys()
    snapshot = _snapshot(json.dumps({"keys": [jwk for _, jwk in snapshot_keys.values()]}))
    now = int(time.time())
    no_remote: Callable[[str], None] = lambda uri: None  # noqa: E731
    rows: list[tuple[str, float]] = []
    for alg, (private, jwk) in snapshot_keys.items():
        tokens = [
            pyjwt.encode({"iss": ISSUER, "sub": f"u{i}", "exp": now + 3600}, private,  # type: ignore[arg-type]
                         algorithm=alg, headers={"kid": jwk["kid"]})
            for i in range(n)
        ]  # fmt: skip
        requests = [_request(token) for token in tokens]
        attrs = [to_attributes(request) for request in requests]
        cache = VerifiedTokenCache(max_entries=n * 2)
        for one in attrs:
            decide(one, snapshot, no_remote, now, cache)  # type: ignore[arg-type]

        def fresh(i: int, attrs: list[object] = attrs) -> object:  # type: ignore[assignment]
            return decide(attrs[i], snapshot, no_remote, now, None)  # type: ignore[arg-type]

        def cached(
            i: int, attrs: list[object] = attrs, cache: VerifiedTokenCache = cache
        ) -> object:  # type: ignore[assignment]
            return decide(attrs[i], snapshot, no_remote, now, cache)  # type: ignore[arg-type]

        def whole(
            i: int, requests: list[object] = requests, cache: VerifiedTokenCache = cache
        ) -> object:  # type: ignore[assignment]
            decision = decide(to_attributes(requests[i]), snapshot, no_remote, now, cache)  # type: ignore[arg-type]
            return to_response(decision)

        rows.append((f"{alg} fresh token: decide (signature verified)", _per_call_us(fresh, n)))
        rows.append((f"{alg} cached token: decide", _per_call_us(cached, n)))
        rows.append(
            (f"{alg} cached token: to_attributes + decide + to_response", _per_call_us(whole, n))
        )
    anonymous = to_attributes(_request(""))
    rows.append(("no token: decide (DENY policy evaluated)",
                 _per_call_us(lambda i: decide(anonymous, snapshot, no_remote, now), n)))  # type: ignore[arg-type]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    print(f"{'case':<{width}}  µs per call (median of 5 runs of {n})")
    for name, value in rows:
        print(f"{name:<{width}}  {value:8.1f}")


if __name__ == "__main__":
    main()
