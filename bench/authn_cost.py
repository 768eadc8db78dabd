"""What one Check costs inside extauthz, per stage, in microseconds (no network, no Envoy).

    .venv/bin/python bench/authn_cost.py [--iterations N]

Prints a table; asserts nothing. Tokens are minted here with fresh RS256 and ES256 keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from functools import partial

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from envoy.service.auth.v3 import external_auth_pb2
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from extauthz.attributes import RequestAttributes
from extauthz.authn.cache import TokenCache
from extauthz.authn.key_store import KeyStore
from extauthz.config.parse import parse_documents
from extauthz.config.workload import Workload
from extauthz.decision import decide
from extauthz.rig.rig import SAMPLES
from extauthz.server.envoy_api import Responses, to_attributes
from extauthz.server.grpc_service import AuthorizationService
from extauthz.server.logs import DecisionLogger
from extauthz.server.metrics import Metrics
from extauthz.snapshot.compile import Generation, compile_generation
from extauthz.snapshot.store import ConfigStore

ISSUER = "https://bench.example"
WORKLOAD = Workload("istio-system", {"app": "istio-ingressgateway"})


def _keys() -> dict[str, tuple[object, dict[str, object]]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "RS256": (rsa_key, {**json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "rs"}),
        "ES256": (ec_key, {**json.loads(ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "es"}),
    }


def _generation(jwks: str) -> Generation:
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
    return compile_generation(config, "istio-system")


def _service(generation: Generation) -> AuthorizationService:
    """The real Check path (memo, metrics, logs off) over this configuration."""
    store = ConfigStore((), WORKLOAD, "istio-system")
    store.set_generation(generation)
    return AuthorizationService(
        store, KeyStore(), Metrics(), decision_logger=DecisionLogger("none")
    )


def _same(service: AuthorizationService) -> AuthorizationService:
    return service


def _checks_us(make_service: Callable[[], AuthorizationService], wire: list[bytes]) -> float:
    """µs per Check, each request parsed from its bytes first as gRPC does (a parsed message
    read again would be faster than any real request); the parse is timed and taken off.
    Each of the 5 runs gets a service from `make_service` (new, or one already warm)."""

    async def run() -> float:
        samples = []
        for _ in range(5):
            service = make_service()
            start = time.perf_counter()
            for data in wire:
                await service.Check(CheckRequest.FromString(data), None)
            checks = time.perf_counter() - start
            start = time.perf_counter()
            for data in wire:
                CheckRequest.FromString(data)
            samples.append((checks - (time.perf_counter() - start)) / len(wire) * 1e6)
        return statistics.median(samples)

    return asyncio.run(run())


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
    generation = _generation(json.dumps({"keys": [jwk for _, jwk in snapshot_keys.values()]}))
    snapshot = generation.snapshot_for(WORKLOAD)
    now = int(time.time())
    no_remote: Callable[[str, float], None] = lambda uri, now: None  # noqa: E731
    rows: list[tuple[str, float]] = []
    for alg, (private, jwk) in snapshot_keys.items():
        tokens = [
            pyjwt.encode({"iss": ISSUER, "sub": f"u{i}", "exp": now + 3600}, private,  # type: ignore[arg-type]
                         algorithm=alg, headers={"kid": jwk["kid"]})
            for i in range(n)
        ]  # fmt: skip
        requests = [_request(token) for token in tokens]
        attrs = [to_attributes(request) for request in requests]
        cache = TokenCache(max_entries=n * 2)
        for one in attrs:
            decide(one, snapshot, no_remote, now, cache)

        def fresh(i: int, attrs: list[RequestAttributes] = attrs) -> object:
            return decide(attrs[i], snapshot, no_remote, now, None)

        def cached(
            i: int, attrs: list[RequestAttributes] = attrs, cache: TokenCache = cache
        ) -> object:
            return decide(attrs[i], snapshot, no_remote, now, cache)

        responses = Responses()

        def whole(
            i: int,
            requests: list[CheckRequest] = requests,
            cache: TokenCache = cache,
            responses: Responses = responses,
        ) -> object:
            decision = decide(to_attributes(requests[i]), snapshot, no_remote, now, cache)
            return responses.get(decision)

        wire = [request.SerializeToString() for request in requests]
        never_seen = _checks_us(partial(_service, generation), wire)
        rows.append((f"{alg} Check, a token never seen (whole path)", never_seen))
        warm = _service(generation)
        remembered = _checks_us(partial(_same, warm), wire[:1] * n)
        rows.append((f"{alg} Check, answer remembered (same request)", remembered))
        rows.append((f"{alg} fresh token: decide (signature verified)", _per_call_us(fresh, n)))
        rows.append((f"{alg} cached token: decide", _per_call_us(cached, n)))
        rows.append(
            (f"{alg} cached token: to_attributes + decide + response", _per_call_us(whole, n))
        )
    anonymous = to_attributes(_request(""))
    denied = _per_call_us(lambda i: decide(anonymous, snapshot, no_remote, now), n)
    rows.append(("no token: decide (DENY policy evaluated)", denied))
    width = max(len(name) for name, _ in rows)
    print(f"{'case':<{width}}  µs per call (median of 5 runs of {n})")
    for name, value in rows:
        print(f"{name:<{width}}  {value:8.1f}")


if __name__ == "__main__":
    main()
