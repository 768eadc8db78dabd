"""Shared pieces for tests of remembered decisions: named tokens minted around the wall
clock, YAML builders, one CheckRequest as plain values (`Req`), and the service in process
(`serve`), which can also decide a request fresh, as a service that never remembers would."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from envoy.service.auth.v3 import external_auth_pb2
from google.rpc import code_pb2

from extauthz.authn.key_store import KeyStore
from extauthz.config.workload import Workload, parse_labels
from extauthz.decision import decide
from extauthz.server.envoy_api import build_response, to_attributes
from extauthz.server.grpc_service import AuthorizationService
from extauthz.server.logs import DecisionLogger
from extauthz.server.metrics import Metrics
from extauthz.snapshot.compile import Snapshot
from extauthz.snapshot.store import ConfigStore
from tests.support.tokens import ISSUER, claims, ec_key, jwks_of, rsa_key

OTHER_ISSUER = "https://other.example.com"
KEY = rsa_key()
IMPOSTOR = rsa_key(kid=KEY.jwk["kid"])  # signs with KEY's kid: JwtVerificationFail
OTHER_KEY = ec_key()
JWKS = jwks_of(KEY)
OTHER_JWKS = jwks_of(OTHER_KEY)
NOW = int(time.time())  # Check reads the wall clock; tokens live an hour around it
REMOTE_URI = "http://127.0.0.1:1/keys"  # never fetched: the tests put keys in the KeyStore


def token(sub: str = "alice", groups: Iterable[str] = ("dev",), **overrides: object) -> str:
    body: dict[str, object] = {"sub": sub, "groups": list(groups), "iat": NOW, "exp": NOW + 3600}
    return KEY.sign(claims(**{**body, **overrides}))


def other_token(**overrides: object) -> str:
    body: dict[str, object] = {"iss": OTHER_ISSUER, "sub": "carol", "iat": NOW, "exp": NOW + 3600}
    return OTHER_KEY.sign(claims(**{**body, **overrides}))


ALICE, BOB = token(), token(sub="bob")
TOKENS = {
    "alice-dev": ALICE,
    "alice-ops": token(groups=("ops",)),
    "bob-dev": BOB,
    "expired": token(exp=NOW - 3600),
    "bad-signature": IMPOSTOR.sign(claims(iat=NOW, exp=NOW + 3600)),
    "unknown-issuer": token(iss="https://elsewhere.example"),
    "garbage": "not.a.token",
}
COOKIE_TOKENS = {"other-valid": other_token(), "other-expired": other_token(exp=NOW - 3600), "garbage": "x.y.z"}  # fmt: skip


# --- YAML ---------------------------------------------------------------------------------


def authn(extra: str = "") -> str:
    """One JWTRule for ISSUER with inline keys; `extra` adds fields to the rule."""
    return f"""
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  jwtRules:
  - issuer: {ISSUER}
    jwks: {json.dumps(JWKS)}
    {extra}
"""


def remote_authn() -> str:
    return f"""
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: remote, namespace: foo}}
spec:
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: {REMOTE_URI}
"""


def policy(
    rules: str,
    action: str = "ALLOW",
    name: str = "p",
    namespace: str = "foo",
    selector: str = "",
    dry_run: bool = False,
) -> str:
    annotations = ", annotations: {istio.io/dry-run: 'true'}" if dry_run else ""
    select = f"selector: {{matchLabels: {{{selector}}}}}" if selector else ""
    return f"""
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {namespace}{annotations}}}
spec:
  action: {action}
  {select}
  rules: {rules}
"""


def when(key: str, values: str) -> str:
    return f"[{{when: [{{key: '{key}', values: {values}}}]}}]"


def op(fields: str) -> str:
    return f"[{{to: [{{operation: {{{fields}}}}}]}}]"


def src(fields: str) -> str:
    return f"[{{from: [{{source: {{{fields}}}}}]}}]"


# --- requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """One CheckRequest as plain values, so a test can vary one of them."""

    method: str = "GET"
    host: str = "api.example.com"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    source_ip: str = "192.0.2.10"
    destination_ip: str = "10.0.0.5"
    destination_port: int = 8080
    principal: str = ""
    sni: str = ""
    extensions: tuple[tuple[str, str], ...] = ()

    def with_headers(self, **headers: str) -> Req:
        named = {k.replace("_", "-"): v for k, v in headers.items()}
        kept = tuple((k, v) for k, v in self.headers if k not in named)
        return replace(self, headers=kept + tuple(named.items()))

    def build(self) -> external_auth_pb2.CheckRequest:
        request = external_auth_pb2.CheckRequest()
        attributes = request.attributes
        http = attributes.request.http
        http.method, http.host, http.path, http.scheme = self.method, self.host, self.path, "http"
        pseudo = {":method": self.method, ":authority": self.host, ":path": self.path}
        http.headers.update({**pseudo, **dict(self.headers)})
        attributes.source.address.socket_address.address = self.source_ip
        attributes.source.address.socket_address.port_value = 40000
        attributes.source.principal = self.principal
        attributes.destination.address.socket_address.address = self.destination_ip
        attributes.destination.address.socket_address.port_value = self.destination_port
        attributes.tls_session.sni = self.sni
        attributes.context_extensions.update(dict(self.extensions))
        return request


def bearer(value: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {value}"),)


def wire(response: external_auth_pb2.CheckResponse) -> bytes:
    return bytes(response.SerializeToString(deterministic=True))


BASE = Req(path="/p")


# --- the service, in process --------------------------------------------------------------


@dataclass
class InProcess:
    """An AuthorizationService with its store, keys and metrics; `fresh` decides a request
    from scratch, as a service that never remembers would."""

    service: AuthorizationService
    store: ConfigStore
    keys: KeyStore
    metrics: Metrics
    hops: int
    config: Path

    def snapshot_of(self, request: external_auth_pb2.CheckRequest) -> Snapshot:
        extensions = request.attributes.context_extensions
        if "namespace" in extensions or "labels" in extensions:
            default = self.store.workload
            workload = Workload(
                extensions.get("namespace") or default.namespace,
                parse_labels(extensions["labels"]) if "labels" in extensions else default.labels,
            )
            return self.store.generation.snapshot_for(workload)
        return self.store.current

    def fresh(self, request: external_auth_pb2.CheckRequest) -> external_auth_pb2.CheckResponse:
        attrs = to_attributes(request, self.hops)
        snapshot = self.snapshot_of(request)
        decision = decide(attrs, snapshot, self.keys.keys, int(time.time()), None)
        # Built anew, not through the service's Responses, so that memo is
        # checked too rather than shared by both sides of the comparison.
        return build_response(decision)

    def check(
        self, *requests: Req | external_auth_pb2.CheckRequest
    ) -> list[external_auth_pb2.CheckResponse]:
        async def run() -> list[external_auth_pb2.CheckResponse]:
            built = [r.build() if isinstance(r, Req) else r for r in requests]
            return [await self.service.Check(request, None) for request in built]

        return asyncio.run(run())

    def reload(self, yaml_text: str) -> None:
        self.config.write_text(yaml_text)
        self.store.swap(self.store.build())


def serve(
    tmp_path: Path,
    yaml_text: str,
    hops: int = 0,
    logger: DecisionLogger | None = None,
) -> InProcess:
    """The service for workload foo/app=httpbin, its configuration read from a file."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml_text)
    store = ConfigStore([str(config)], Workload("foo", parse_labels("app=httpbin")), "istio-system")
    store.swap(store.build())
    keys, metrics = KeyStore(), Metrics()
    service = AuthorizationService(
        store,
        keys,
        metrics,
        xff_num_trusted_hops=hops,
        decision_logger=logger or DecisionLogger("none"),
    )
    return InProcess(service, store, keys, metrics, hops, config)


def codes(responses: Iterable[external_auth_pb2.CheckResponse]) -> list[int]:
    return [response.status.code for response in responses]


OK, DENIED, UNAUTHENTICATED = code_pb2.OK, code_pb2.PERMISSION_DENIED, code_pb2.UNAUTHENTICATED
