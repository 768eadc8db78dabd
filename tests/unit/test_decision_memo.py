"""Remembered answers (decision_memo.py) keyed by the request values a decision reads
(config/inputs.py, envoy_api.decision_key): a remembered answer must equal a fresh one."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from envoy.service.auth.v3 import external_auth_pb2
from google.rpc import code_pb2
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from extauthz.authn.cache import VerifiedTokenCache
from extauthz.authn.jwks import KeyStore
from extauthz.authn.keys import KeySet, parse_jwks
from extauthz.authn.providers import ProviderSet
from extauthz.authn.result import ALWAYS, AuthnResult, Validity
from extauthz.authn.status import JwtStatus
from extauthz.config.compile import Snapshot
from extauthz.config.inputs import NOT_REMEMBERED, DecisionInputs, decision_inputs
from extauthz.config.resources import AuthorizationPolicy, Condition, Meta, Origin, Rule
from extauthz.config.store import ConfigStore
from extauthz.config.workload import Workload, parse_labels
from extauthz.decision import Decision, Verdict, decide
from extauthz.decision_memo import DecisionMemo
from extauthz.envoy_api import MAX_KEY_CHARS, build_response, decision_key, to_attributes
from extauthz.grpc_service import AuthorizationService
from extauthz.logs import DecisionLogger
from extauthz.metrics import _LATENCY_BUCKETS, Metrics, _LocalCheckCounts
from tests.support.config import snapshot_from
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
        # Built anew, not through to_response's own memo of responses, so that memo is
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


# --- 1. which inputs a workload's decisions read ----------------------------------------


def _sorted(inputs: DecisionInputs) -> DecisionInputs:
    assert len(set(inputs.headers)) == len(inputs.headers), "a header is listed twice"
    return replace(inputs, headers=tuple(sorted(inputs.headers)))


def _op(fields: str) -> str:
    return f"[{{to: [{{operation: {{{fields}}}}}]}}]"


def _src(fields: str) -> str:
    return f"[{{from: [{{source: {{{fields}}}}}]}}]"


NONE = DecisionInputs()
SOURCE = DecisionInputs(source_ip=True)
REMOTE = DecisionInputs(source_ip=True, headers=("x-forwarded-for",))
DESTINATION = DecisionInputs(destination=True)
PRINCIPAL = DecisionInputs(source_principal=True)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        pytest.param("", NONE, id="nothing-applies"),
        pytest.param(policy(_op("paths: [/a], methods: [GET], hosts: [x.example]")), NONE, id="paths-methods-hosts-read-nothing-extra"),
        pytest.param(policy(_op("notPaths: [/a], notMethods: [GET], notHosts: [x.example]")), NONE, id="not-paths-methods-hosts-read-nothing-extra"),
        pytest.param(policy(_src("requestPrincipals: ['*'], notRequestPrincipals: [a/b]")), NONE, id="request-principals-read-the-token-only"),
        pytest.param(authn(), DecisionInputs(headers=("authorization",)), id="default-jwt-locations"),
        pytest.param(authn("fromHeaders: [{name: X-Jwt-Assertion, prefix: 'Bearer '}]"), DecisionInputs(headers=("x-jwt-assertion",)), id="jwt-from-headers-lower-cased"),
        pytest.param(authn("fromParams: [token]"), NONE, id="jwt-from-params-live-in-the-path"),
        pytest.param(authn("fromCookies: [session]"), DecisionInputs(headers=("cookie",)), id="jwt-from-cookies"),
        pytest.param(authn() + policy(when("request.headers[Authorization]", "[x]")), DecisionInputs(headers=("authorization",)), id="header-read-twice-listed-once"),
        pytest.param(policy(_src("ipBlocks: [10.0.0.0/8]")), SOURCE, id="ip-blocks"),
        pytest.param(policy(_src("notIpBlocks: [10.0.0.0/8]")), SOURCE, id="not-ip-blocks"),
        pytest.param(policy(_src("remoteIpBlocks: [10.0.0.0/8]")), REMOTE, id="remote-ip-blocks"),
        pytest.param(policy(_src("notRemoteIpBlocks: [10.0.0.0/8]")), REMOTE, id="not-remote-ip-blocks"),
        pytest.param(policy(_op("ports: ['8080']")), DESTINATION, id="ports"),
        pytest.param(policy(_op("notPorts: ['8080']")), DESTINATION, id="not-ports"),
        pytest.param(policy(_src("principals: [cluster.local/ns/foo/sa/a]")), PRINCIPAL, id="principals"),
        pytest.param(policy(_src("notPrincipals: [cluster.local/ns/foo/sa/a]")), PRINCIPAL, id="not-principals"),
        pytest.param(policy(_src("namespaces: [foo]")), PRINCIPAL, id="namespaces"),
        pytest.param(policy(_src("notNamespaces: [foo]")), PRINCIPAL, id="not-namespaces"),
        pytest.param(policy(when("request.headers[X-Foo]", "[a]")), DecisionInputs(headers=("x-foo",)), id="when-header-lower-cased"),
        pytest.param(policy(when("request.auth.claims[groups]", "[a]")), NONE, id="when-claim"),
        pytest.param(policy(when("request.auth.claims[org][team]", "[a]")), NONE, id="when-nested-claim"),
        pytest.param(policy(when("request.auth.principal", "[a/b]")), NONE, id="when-request-principal"),
        pytest.param(policy(when("request.auth.audiences", "[a]")), NONE, id="when-audiences"),
        pytest.param(policy(when("request.auth.presenter", "[a]")), NONE, id="when-presenter"),
        pytest.param(policy(when("source.ip", "[10.0.0.1]")), SOURCE, id="when-source-ip"),
        pytest.param(policy(when("remote.ip", "[10.0.0.1]")), REMOTE, id="when-remote-ip"),
        pytest.param(policy(when("source.namespace", "[foo]")), PRINCIPAL, id="when-source-namespace"),
        pytest.param(policy(when("source.principal", "[a]")), PRINCIPAL, id="when-source-principal"),
        pytest.param(policy(when("destination.ip", "[10.0.0.1]")), DESTINATION, id="when-destination-ip"),
        pytest.param(policy(when("destination.port", "['80']")), DESTINATION, id="when-destination-port"),
        pytest.param(policy(when("connection.sni", "[a.example]")), DecisionInputs(sni=True), id="when-sni"),
        pytest.param(policy(_src("ipBlocks: [10.0.0.0/8]"), action="AUDIT"), SOURCE, id="audit-policy-counts-its-metadata-depends-on-it"),
        pytest.param(policy(when("connection.sni", "[a]"), action="DENY", dry_run=True), DecisionInputs(sni=True), id="dry-run-policy-counts"),
        pytest.param(policy(_op("ports: ['80']"), action="DENY"), DESTINATION, id="deny-policy"),
        pytest.param(policy(_op("ports: ['80']"), namespace="istio-system"), DESTINATION, id="root-namespace-policy-applies"),
        pytest.param(policy(_src("ipBlocks: [10.0.0.0/8]"), selector="app: other"), NONE, id="another-workloads-policy-reads-nothing"),
        pytest.param(policy(_src("ipBlocks: [10.0.0.0/8]"), namespace="bar"), NONE, id="another-namespaces-policy-reads-nothing"),
        pytest.param(
            authn("fromCookies: [session]") + policy(when("request.headers[X-Foo]", "[a]")) + policy(_src("remoteIpBlocks: [10.0.0.0/8]"), name="q"),
            DecisionInputs(headers=("cookie", "x-foo", "x-forwarded-for"), source_ip=True),
            id="combined",
        ),
    ],
)  # fmt: skip
def test_decision_inputs(yaml_text: str, expected: DecisionInputs) -> None:
    inputs = snapshot_from(yaml_text).inputs
    assert _sorted(inputs) == _sorted(expected)
    assert inputs.rememberable


def test_a_when_key_not_understood_makes_the_workload_unremembered() -> None:
    odd = AuthorizationPolicy(
        Meta("odd", "foo"),
        Origin("test.yaml", 1),
        rules=(Rule(conditions=(Condition("experimental.envoy.filters.x", ("a",)),)),),
    )
    inputs = decision_inputs(ProviderSet(), [odd])
    assert inputs == NOT_REMEMBERED and not inputs.rememberable
    assert decision_key(Req().build().attributes, inputs, 1) is None


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(replace(Req(), method="OPTIONS"), id="options"),
        pytest.param(replace(Req(), method=""), id="no-method"),
        pytest.param(replace(Req(), path=""), id="no-path"),
        pytest.param(replace(Req(), host=""), id="no-host"),
    ],
)  # fmt: skip
def test_requests_without_a_key(request_: Req) -> None:
    assert decision_key(request_.build().attributes, DecisionInputs(), 1) is None


def test_a_header_map_request_has_no_key() -> None:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.host, http.path = "GET", "a.example", "/"
    http.header_map.headers.add(key="x-foo", raw_value=b"yes")
    assert decision_key(request.attributes, DecisionInputs(headers=("x-foo",)), 1) is None


@pytest.mark.parametrize(
    ("path", "header", "remembered"),
    [
        pytest.param("/" + "p" * (MAX_KEY_CHARS - 20), "x" * 10, True, id="just-under"),
        pytest.param("/" + "p" * MAX_KEY_CHARS, "", False, id="long-path"),
        pytest.param("/p", "x" * MAX_KEY_CHARS, False, id="long-header"),
    ],
)
def test_long_requests_are_never_remembered(path: str, header: str, remembered: bool) -> None:
    """A client can send a new 60 KiB path or header with every request: keys past
    MAX_KEY_CHARS are not kept, so the memo's memory stays bounded."""
    request = replace(Req(), host="h.example", path=path, headers=(("x-foo", header),))
    key = decision_key(request.build().attributes, DecisionInputs(headers=("x-foo",)), 1)
    assert (key is not None) is remembered


def test_a_long_request_is_answered_but_not_remembered(tmp_path: Path) -> None:
    served = serve(tmp_path, policy(_op("paths: [/p]"), action="DENY", name="deny-p"))
    long_path = replace(BASE, path="/" + "q" * (MAX_KEY_CHARS + 1))
    answers = served.check(long_path, long_path, BASE, BASE)
    assert codes(answers) == [OK, OK, DENIED, DENIED]
    assert [wire(a) for a in answers[:2]] == [wire(served.fresh(long_path.build()))] * 2
    assert (served.service.memo.hits, len(served.service.memo)) == (1, 1)  # BASE only


def test_the_key_holds_exactly_the_values_listed() -> None:
    inputs = DecisionInputs(headers=("x-foo", "x-absent"), source_ip=True, destination=True,
                            source_principal=True, sni=True)  # fmt: skip
    request = Req(
        method="POST", host="h.example", path="/p?q=1", headers=(("x-foo", "1"), ("x-other", "2")),
        source_ip="10.1.1.1", destination_ip="10.2.2.2", destination_port=81,
        principal="spiffe://td/ns/a/sa/b", sni="s.example",
    )  # fmt: skip
    assert decision_key(request.build().attributes, inputs, 7) == (
        7, "POST", "h.example", "/p?q=1", "1", None,
        "10.1.1.1", "10.2.2.2", 81, "spiffe://td/ns/a/sa/b", "s.example",
    )  # fmt: skip
    assert decision_key(request.build().attributes, DecisionInputs(), 7) == (
        7, "POST", "h.example", "/p?q=1",
    )  # fmt: skip


# --- 2. a remembered answer equals a freshly decided one ---------------------------------

BROAD = f"""
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  jwtRules:
  - issuer: {ISSUER}
    jwks: {json.dumps(JWKS)}
    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]
  - issuer: {OTHER_ISSUER}
    jwks: {json.dumps(OTHER_JWKS)}
    fromCookies: [session]
"""
BROAD += policy(
    "[{from: [{source: {ipBlocks: [10.9.0.0/16]}}], when: [{key: 'request.headers[X-Env]', values: [blocked]}]},"
    " {to: [{operation: {ports: ['9090'], paths: ['/admin/*']}}]}]",
    action="DENY", name="deny-blocked",
)  # fmt: skip
BROAD += policy(
    f"""[
    {{from: [{{source: {{requestPrincipals: ['{ISSUER}/*']}}}}],
      to: [{{operation: {{methods: [GET, POST], paths: ['/api/*'], hosts: [api.example.com]}}}}],
      when: [{{key: 'request.auth.claims[groups]', values: [dev]}}]}},
    {{from: [{{source: {{remoteIpBlocks: [203.0.113.0/24]}}}}], to: [{{operation: {{methods: [GET], paths: ['/public/*']}}}}]}},
    {{from: [{{source: {{principals: [cluster.local/ns/foo/sa/sleep]}}}}], to: [{{operation: {{paths: ['/internal/*']}}}}]}},
    {{to: [{{operation: {{paths: ['/tls/*']}}}}], when: [{{key: connection.sni, values: [secure.example.com]}}]}},
    {{from: [{{source: {{namespaces: [trusted]}}}}], to: [{{operation: {{notPaths: ['/admin/*']}}}}]}},
    {{when: [{{key: 'request.headers[x-api-key]', values: [k1]}}]}},
    {{from: [{{source: {{requestPrincipals: ['{OTHER_ISSUER}/*']}}}}], to: [{{operation: {{paths: ['/other/*']}}}}]}}
  ]""",
    name="allow-main", selector="app: httpbin",
)  # fmt: skip
BROAD += policy(
    "[{to: [{operation: {methods: [DELETE]}}]}, {from: [{source: {ipBlocks: [192.0.2.0/24]}}]}]",
    action="AUDIT", name="audit",
)  # fmt: skip
BROAD += policy(
    "[{to: [{operation: {paths: [/api/secret]}}]}]", action="DENY", name="dry-secret", dry_run=True
)
BROAD += policy(when("request.headers[x-bar]", "['no']"), action="DENY", name="bar-deny", namespace="bar")  # fmt: skip

PATHS = ("/api/items", "/api/secret", "/public/a", "/internal/x", "/tls/y", "/admin/panel", "/other/z", "/")  # fmt: skip
WORKLOADS = ((), (("namespace", "bar"), ("labels", "app=web")), (("labels", "app=other"),))


def _with_token(request: Req, rng: random.Random) -> Req:
    name = rng.choice([None, *TOKENS])
    if name is None:
        return request
    if rng.random() < 0.2:  # Istio's default `access_token` query parameter
        sep = "&" if "?" in request.path else "?"
        return replace(request, path=f"{request.path}{sep}access_token={TOKENS[name]}")
    return request.with_headers(authorization=f"Bearer {TOKENS[name]}")


MUTATIONS: dict[str, Callable[[Req, random.Random], Req]] = {
    "method": lambda r, g: replace(r, method=g.choice(["GET", "POST", "DELETE", "PUT"])),
    "host": lambda r, g: replace(r, host=g.choice(["api.example.com", "API.example.com:443", "other.example.com"])),
    "path": lambda r, g: replace(r, path=g.choice(PATHS) + g.choice(["", "?q=1"])),
    "token": lambda r, g: _with_token(replace(r, headers=tuple(h for h in r.headers if h[0] != "authorization")), g),
    "cookie": lambda r, g: r.with_headers(cookie=f"a=1; session={COOKIE_TOKENS[g.choice(list(COOKIE_TOKENS))]}"),
    "x-env": lambda r, g: r.with_headers(x_env=g.choice(["prod", "blocked"])),
    "x-api-key": lambda r, g: r.with_headers(x_api_key=g.choice(["k1", "k2"])),
    "x-bar": lambda r, g: r.with_headers(x_bar=g.choice(["no", "yes"])),
    "xff": lambda r, g: r.with_headers(x_forwarded_for=g.choice(["203.0.113.7", "198.51.100.1, 203.0.113.7", "203.0.113.7, 198.51.100.1", "198.51.100.1"])),
    "source-ip": lambda r, g: replace(r, source_ip=g.choice(["10.9.1.1", "10.1.1.1", "192.0.2.5", "203.0.113.9"])),
    "port": lambda r, g: replace(r, destination_port=g.choice([8080, 9090])),
    "sni": lambda r, g: replace(r, sni=g.choice(["", "secure.example.com", "other.example.com"])),
    "principal": lambda r, g: replace(r, principal=g.choice(["", "spiffe://cluster.local/ns/foo/sa/sleep", "spiffe://cluster.local/ns/trusted/sa/x"])),
    "workload": lambda r, g: replace(r, extensions=g.choice(WORKLOADS)),
    "x-forwarded-proto": lambda r, g: r.with_headers(x_forwarded_proto=g.choice(["http", "https"])),
}  # fmt: skip


def _random_request(rng: random.Random) -> Req:
    request = Req()
    for name in rng.sample(sorted(MUTATIONS), k=rng.randint(2, len(MUTATIONS))):
        request = MUTATIONS[name](request, rng)
    return request


def _templates(rng: random.Random) -> list[Req]:
    """Random requests, each followed by neighbours that differ from it in one value, which
    is where a value missing from the key would show as a stale answer."""
    templates = []
    for _ in range(45):
        base = _random_request(rng)
        templates.append(base)
        for name in rng.sample(sorted(MUTATIONS), k=3):
            templates.append(MUTATIONS[name](base, rng))
    return templates


@pytest.mark.parametrize("hops", [0, 1])
def test_a_remembered_answer_equals_a_fresh_one(tmp_path: Path, hops: int) -> None:
    served = serve(tmp_path, BROAD, hops=hops)
    memo = served.service.memo
    rng = random.Random(20240611 + hops)
    templates = _templates(rng)
    hit_verdicts: list[int] = []

    async def scenario() -> None:
        for number in range(700):
            template = rng.choice(templates)
            request = template.with_headers(x_request_id=f"req-{number}").build()
            hits = memo.hits
            answer = await served.service.Check(request, None)
            if memo.hits > hits:
                hit_verdicts.append(answer.status.code)
            assert wire(answer) == wire(served.fresh(request)), (template, hits != memo.hits)

    asyncio.run(scenario())
    assert memo.hits > 100 and memo.misses > 100  # not vacuous: both paths ran a lot
    assert {OK, DENIED} <= set(hit_verdicts)
    assert UNAUTHENTICATED not in hit_verdicts
    answered = codes(served.fresh(t.build()) for t in templates)
    assert {OK, DENIED, UNAUTHENTICATED} <= set(answered)


# --- 3. requests differing in one value the decision reads --------------------------------

BASE = Req(path="/p")


@pytest.mark.parametrize(
    ("yaml_text", "hops", "first", "second", "expected"),
    [
        pytest.param(policy(when("request.headers[X-Foo]", "['yes']")), 0, BASE.with_headers(x_foo="yes"), BASE.with_headers(x_foo="no"), (OK, DENIED), id="when-header"),
        pytest.param(policy(when("request.headers[X-Foo]", "['yes']")), 0, BASE.with_headers(x_foo="yes"), BASE, (OK, DENIED), id="when-header-absent"),
        pytest.param(policy(_src("ipBlocks: [10.0.0.0/8]")), 0, replace(BASE, source_ip="10.1.1.1"), replace(BASE, source_ip="192.0.2.1"), (OK, DENIED), id="ip-blocks"),
        pytest.param(policy(when("source.ip", "[10.0.0.0/8]")), 0, replace(BASE, source_ip="10.1.1.1"), replace(BASE, source_ip="192.0.2.1"), (OK, DENIED), id="when-source-ip"),
        pytest.param(policy(_src("remoteIpBlocks: [203.0.113.0/24]")), 1, BASE.with_headers(x_forwarded_for="203.0.113.7, 10.0.0.2"), BASE.with_headers(x_forwarded_for="198.51.100.1, 10.0.0.2"), (OK, DENIED), id="remote-ip-blocks-xff-one-trusted-hop"),
        pytest.param(policy(_src("remoteIpBlocks: [203.0.113.0/24]")), 0, BASE.with_headers(x_forwarded_for="10.0.0.2, 203.0.113.7"), BASE.with_headers(x_forwarded_for="203.0.113.7, 10.0.0.2"), (OK, DENIED), id="remote-ip-blocks-xff-no-trusted-hops"),
        pytest.param(policy(_src("remoteIpBlocks: [203.0.113.0/24]")), 0, replace(BASE, source_ip="203.0.113.7"), replace(BASE, source_ip="10.0.0.2"), (OK, DENIED), id="remote-ip-without-xff-is-the-peer"),
        pytest.param(policy(when("remote.ip", "[203.0.113.0/24]")), 0, BASE.with_headers(x_forwarded_for="203.0.113.7"), BASE.with_headers(x_forwarded_for="198.51.100.1"), (OK, DENIED), id="when-remote-ip"),
        pytest.param(policy(_op("ports: ['8080']")), 0, replace(BASE, destination_port=8080), replace(BASE, destination_port=9090), (OK, DENIED), id="ports"),
        pytest.param(policy(when("destination.port", "['8080']")), 0, replace(BASE, destination_port=8080), replace(BASE, destination_port=9090), (OK, DENIED), id="when-destination-port"),
        pytest.param(policy(when("destination.ip", "[10.0.0.0/8]")), 0, replace(BASE, destination_ip="10.0.0.5"), replace(BASE, destination_ip="172.16.0.5"), (OK, DENIED), id="when-destination-ip"),
        pytest.param(policy(when("connection.sni", "[a.example]")), 0, replace(BASE, sni="a.example"), replace(BASE, sni="b.example"), (OK, DENIED), id="sni"),
        pytest.param(policy(_src("principals: [cluster.local/ns/foo/sa/sleep]")), 0, replace(BASE, principal="spiffe://cluster.local/ns/foo/sa/sleep"), replace(BASE, principal="spiffe://cluster.local/ns/foo/sa/other"), (OK, DENIED), id="principals"),
        pytest.param(policy(when("source.principal", "[cluster.local/ns/foo/sa/sleep]")), 0, replace(BASE, principal="spiffe://cluster.local/ns/foo/sa/sleep"), replace(BASE, principal=""), (OK, DENIED), id="when-source-principal"),
        pytest.param(policy(_src("namespaces: [foo]")), 0, replace(BASE, principal="spiffe://cluster.local/ns/foo/sa/x"), replace(BASE, principal="spiffe://cluster.local/ns/bar/sa/x"), (OK, DENIED), id="namespaces"),
        pytest.param(policy(_op("hosts: [a.example]")), 0, replace(BASE, host="a.example"), replace(BASE, host="b.example"), (OK, DENIED), id="hosts"),
        pytest.param(policy(_op("methods: [GET]")), 0, BASE, replace(BASE, method="POST"), (OK, DENIED), id="methods"),
        pytest.param(policy(_op("paths: [/p]")), 0, BASE, replace(BASE, path="/q"), (OK, DENIED), id="paths"),
        pytest.param(authn() + policy(_src(f"requestPrincipals: [{ISSUER}/alice]")), 0, replace(BASE, headers=bearer(ALICE)), replace(BASE, headers=bearer(BOB)), (OK, DENIED), id="token-in-authorization"),
        pytest.param(authn() + policy(_src(f"requestPrincipals: [{ISSUER}/alice]")), 0, replace(BASE, path=f"/p?access_token={ALICE}"), replace(BASE, path=f"/p?access_token={BOB}"), (OK, DENIED), id="token-in-access-token-param"),
        pytest.param(authn("fromHeaders: [{name: X-Jwt}]") + policy(_src(f"requestPrincipals: [{ISSUER}/alice]")), 0, BASE.with_headers(x_jwt=ALICE), BASE.with_headers(x_jwt=BOB), (OK, DENIED), id="token-in-custom-header"),
        pytest.param(authn("fromCookies: [session]") + policy(_src(f"requestPrincipals: [{ISSUER}/alice]")), 0, BASE.with_headers(cookie=f"session={ALICE}"), BASE.with_headers(cookie=f"session={BOB}"), (OK, DENIED), id="token-in-cookie"),
        pytest.param(authn() + policy(when("request.auth.claims[groups]", "[dev]")), 0, replace(BASE, headers=bearer(ALICE)), replace(BASE, headers=bearer(TOKENS["alice-ops"])), (OK, DENIED), id="claim"),
        pytest.param(authn("outputClaimToHeaders: [{header: x-team, claim: team}]"), 0, replace(BASE, headers=bearer(token(team="blue"))), replace(BASE, headers=bearer(token(team="red"))), (OK, OK), id="claim-to-header-same-principal"),
        pytest.param(policy(_src("ipBlocks: [10.0.0.0/8]"), action="AUDIT"), 0, replace(BASE, source_ip="10.1.1.1"), replace(BASE, source_ip="192.0.2.1"), (OK, OK), id="audit-metadata-differs"),
        pytest.param(policy(when("connection.sni", "[a.example]"), action="DENY", dry_run=True), 0, replace(BASE, sni="a.example"), replace(BASE, sni="b.example"), (OK, OK), id="dry-run-metadata-differs"),
    ],
)  # fmt: skip
def test_one_value_apart_two_answers(
    tmp_path: Path, yaml_text: str, hops: int, first: Req, second: Req, expected: tuple[int, int]
) -> None:
    served = serve(tmp_path, yaml_text, hops=hops)
    answers = served.check(first, second, first, second)
    assert codes(answers) == [*expected, *expected]
    assert wire(answers[0]) != wire(answers[1])
    assert [wire(a) for a in answers[2:]] == [wire(a) for a in answers[:2]]
    assert served.service.memo.hits == 2  # the second pair was remembered, each its own
    assert wire(answers[0]) == wire(served.fresh(first.build()))
    assert wire(answers[1]) == wire(served.fresh(second.build()))


def test_a_value_no_policy_reads_shares_the_answer(tmp_path: Path) -> None:
    served = serve(tmp_path, policy(_src("ipBlocks: [10.0.0.0/8]")))
    one = replace(BASE, source_ip="10.1.1.1")
    others = [one.with_headers(x_anything="1"), replace(one, sni="x"), replace(one, destination_port=1)]  # fmt: skip
    answers = served.check(one, *others)
    assert served.service.memo.hits == 3
    assert {wire(a) for a in answers} == {wire(answers[0])}


# --- 4. never remembered ------------------------------------------------------------------


def _realm(response: external_auth_pb2.CheckResponse) -> str:
    [challenge] = [h.header.value for h in response.denied_response.headers if h.header.key == "www-authenticate"]  # fmt: skip
    found = re.search(r'realm="([^"]*)"', challenge)
    assert found
    return found.group(1)


def test_invalid_tokens_are_decided_every_time(tmp_path: Path) -> None:
    served = serve(tmp_path, authn())
    bad = bearer(TOKENS["bad-signature"])
    one, two = replace(BASE, path="/one?x=1", headers=bad), replace(BASE, path="/two", headers=bad)
    https = one.with_headers(x_forwarded_proto="https")
    answers = served.check(one, one, two, https)
    assert codes(answers) == [UNAUTHENTICATED] * 4
    assert [a.denied_response.status.code for a in answers] == [401] * 4
    assert [_realm(a) for a in answers] == [
        "http://api.example.com/one?x=1",
        "http://api.example.com/one?x=1",
        "http://api.example.com/two",
        "https://api.example.com/one?x=1",
    ]
    memo = served.service.memo
    assert (memo.hits, memo.misses, len(memo)) == (0, 4, 0)


@pytest.mark.parametrize("name", ["expired", "bad-signature", "unknown-issuer", "garbage"])
def test_no_401_is_remembered(tmp_path: Path, name: str) -> None:
    served = serve(tmp_path, authn())
    request = replace(BASE, headers=bearer(TOKENS[name]))
    assert codes(served.check(request, request)) == [UNAUTHENTICATED] * 2
    assert (served.service.memo.hits, len(served.service.memo)) == (0, 0)


def test_options_requests_are_not_remembered(tmp_path: Path) -> None:
    served = serve(tmp_path, authn() + policy(_op("methods: [GET]")))
    preflight = replace(BASE, method="OPTIONS").with_headers(
        origin="https://a.example", access_control_request_method="GET",
        authorization=f"Bearer {TOKENS['garbage']}",
    )  # fmt: skip
    answers = served.check(preflight, preflight)
    assert codes(answers) == [DENIED, DENIED]  # no JWT check (CORS bypass), then methods
    assert wire(answers[0]) == wire(served.fresh(preflight.build()))
    memo = served.service.memo
    assert (memo.hits, memo.misses, len(memo)) == (0, 0, 0)


def _header_map_request(**headers: str) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.host, http.path = "GET", "api.example.com", "/p"
    for name, value in headers.items():
        http.header_map.headers.add(key=name.replace("_", "-"), raw_value=value.encode())
    request.attributes.source.address.socket_address.address = "192.0.2.10"
    return request


def test_header_map_requests_are_not_remembered(tmp_path: Path) -> None:
    served = serve(tmp_path, policy(when("request.headers[X-Foo]", "['yes']")))
    yes, no = _header_map_request(x_foo="yes"), _header_map_request(x_foo="no")
    assert codes(served.check(yes, no, yes, no)) == [OK, DENIED, OK, DENIED]
    memo = served.service.memo
    assert (memo.hits, memo.misses, len(memo)) == (0, 0, 0)


def test_accepted_beside_a_not_yet_valid_token_is_not_remembered(tmp_path: Path) -> None:
    # The cookie's token may become valid later, and then its payload joins the answer.
    served = serve(tmp_path, BROAD)
    soon = other_token(nbf=NOW + 3000)
    request = replace(BASE, path="/api/items", headers=bearer(ALICE)).with_headers(cookie=f"session={soon}")  # fmt: skip
    assert codes(served.check(request, request)) == [OK, OK]
    assert (served.service.memo.hits, len(served.service.memo)) == (0, 0)


# --- 5. validity: time and key sets ------------------------------------------------------


def _no_keys(uri: str) -> KeySet | None:
    return None


@pytest.mark.parametrize(
    ("now", "holds"),
    [
        pytest.param(99, False, id="before-valid-from"),
        pytest.param(100, True, id="at-valid-from"),
        pytest.param(150, True, id="inside"),
        pytest.param(200, True, id="at-valid-until"),
        pytest.param(201, False, id="after-valid-until"),
    ],
)
def test_validity_window(now: float, holds: bool) -> None:
    assert Validity(100, 200).holds(now, _no_keys) is holds
    assert ALWAYS.holds(now, _no_keys)


def test_validity_needs_the_very_same_key_sets() -> None:
    keys, same_content = parse_jwks(JWKS), parse_jwks(JWKS)
    validity = Validity(remote_keys=((REMOTE_URI, keys),))
    assert validity.holds(0, lambda uri: keys)
    assert not validity.holds(0, lambda uri: same_content)  # replaced, if equal
    assert not validity.holds(0, _no_keys)  # gone (stale)
    assert not Validity(remote_keys=((REMOTE_URI, None),)).holds(0, lambda uri: keys)  # arrived


def test_an_answer_is_remembered_while_its_token_is_inside_nbf_exp_and_the_skew(
    tmp_path: Path,
) -> None:
    served = serve(tmp_path, authn())
    nbf, exp = NOW - 10, NOW + 600
    request = replace(BASE, headers=bearer(token(nbf=nbf, exp=exp))).build()
    assert codes(served.check(request)) == [OK]
    snapshot, memo = served.store.current, served.service.memo
    key = decision_key(request.attributes, snapshot.inputs, id(snapshot))
    lookup = served.keys.keys
    assert memo.get(key, snapshot, exp + 60, lookup) is not None
    assert memo.get(key, snapshot, exp + 61, lookup) is None
    assert memo.get(key, snapshot, nbf - 60, lookup) is not None
    assert memo.get(key, snapshot, nbf - 61, lookup) is None
    # And past exp + skew a fresh decision is indeed another answer.
    later = decide(to_attributes(request), snapshot, lookup, exp + 61)
    assert later.verdict is Verdict.UNAUTHENTICATED


def test_past_exp_and_skew_the_next_check_decides_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = serve(tmp_path, authn())
    exp = NOW + 100
    request = replace(BASE, headers=bearer(token(exp=exp)))
    assert codes(served.check(request, request)) == [OK, OK]
    assert served.service.memo.hits == 1
    monkeypatch.setattr(time, "time", lambda: exp + 60.5)  # Check reads whole seconds
    assert codes(served.check(request)) == [OK]
    assert served.service.memo.hits == 2
    monkeypatch.setattr(time, "time", lambda: exp + 61.0)
    [expired] = served.check(request)
    assert expired.status.code == UNAUTHENTICATED
    assert expired.denied_response.body == JwtStatus.JwtExpired.message
    assert served.service.memo.hits == 2


def test_the_window_is_that_of_every_token_accepted(tmp_path: Path) -> None:
    served = serve(tmp_path, BROAD)
    header_exp, cookie_exp = NOW + 900, NOW + 300
    request = replace(BASE, path="/api/items", headers=bearer(token(exp=header_exp)))
    request = request.with_headers(cookie=f"session={other_token(exp=cookie_exp, nbf=NOW - 5)}")
    attrs = to_attributes(request.build())
    decision = decide(attrs, served.store.current, served.keys.keys, NOW, VerifiedTokenCache())
    assert decision.is_allowed
    assert decision.authn.validity == Validity(NOW - 5 - 60, cookie_exp + 60, ())


def test_a_replaced_remote_key_set_ends_the_answer(tmp_path: Path) -> None:
    served = serve(tmp_path, remote_authn() + policy(_src("requestPrincipals: ['*']")))
    served.keys.record_success(REMOTE_URI, parse_jwks(JWKS), time.time())
    request = replace(BASE, headers=bearer(ALICE)).build()
    memo = served.service.memo
    assert codes(served.check(request, request)) == [OK, OK]
    assert memo.hits == 1

    snapshot = served.store.current
    key = decision_key(request.attributes, snapshot.inputs, id(snapshot))
    old = served.keys.keys(REMOTE_URI)
    served.keys.record_success(REMOTE_URI, parse_jwks(JWKS), time.time())  # same keys, new set
    assert memo.get(key, snapshot, NOW, lambda uri: old) is not None
    assert memo.get(key, snapshot, NOW, served.keys.keys) is None
    hits = memo.hits
    assert codes(served.check(request)) == [OK]  # decided again, still allowed
    assert memo.hits == hits

    served.keys.record_success(REMOTE_URI, parse_jwks(OTHER_JWKS), time.time())  # rotated
    answers = served.check(request, request)
    assert codes(answers) == [UNAUTHENTICATED] * 2  # no stale allow
    assert answers[0].denied_response.body == JwtStatus.JwksKidAlgMismatch.message
    assert memo.hits == hits


def test_remote_keys_gone_stale_end_the_answer(tmp_path: Path) -> None:
    served = serve(tmp_path, remote_authn())
    keys = parse_jwks(JWKS)
    served.keys.record_success(REMOTE_URI, keys, time.time())
    request = replace(BASE, headers=bearer(ALICE))
    assert codes(served.check(request, request)) == [OK, OK]
    assert served.service.memo.hits == 1
    stale = time.time() - served.keys.max_stale_seconds - 10
    served.keys.record_success(REMOTE_URI, keys, stale)  # the very same KeySet, too old now
    [answer] = served.check(request)
    assert answer.status.code == UNAUTHENTICATED
    assert answer.denied_response.body == JwtStatus.JwksFetchFail.message
    assert served.service.memo.hits == 1


def _decision(
    verdict: Verdict, generation: int = 1, validity: Validity | None = ALWAYS
) -> Decision:
    return Decision(verdict, 200, "r", AuthnResult(JwtStatus.Ok, validity=validity), generation=generation)  # fmt: skip


def test_memo_put_and_get_rules() -> None:
    snapshot = snapshot_from("")
    other = snapshot_from("")
    memo: DecisionMemo[str] = DecisionMemo()
    memo.put("allow", snapshot, _decision(Verdict.ALLOW), "A")
    memo.put("deny", snapshot, _decision(Verdict.DENY), "D")
    memo.put("401", snapshot, _decision(Verdict.UNAUTHENTICATED), "U")
    memo.put("no-validity", snapshot, _decision(Verdict.ALLOW, validity=None), "N")
    memo.put("old-generation", snapshot, _decision(Verdict.ALLOW, generation=2), "G")
    assert [memo.get(k, snapshot, 0, _no_keys) for k in ("allow", "deny", "401", "no-validity", "old-generation")] == ["A", "D", None, None, None]  # fmt: skip
    assert memo.get("allow", other, 0, _no_keys) is None  # another Snapshot object
    assert memo.get("missing", snapshot, 0, _no_keys) is None
    assert (memo.hits, memo.misses, len(memo)) == (2, 5, 2)
    expiring = _decision(Verdict.ALLOW, validity=Validity(0, 100))
    memo.put("expiring", snapshot, expiring, "E")
    assert memo.get("expiring", snapshot, 100, _no_keys) == "E"
    assert memo.get("expiring", snapshot, 101, _no_keys) is None
    memo.clear()
    assert len(memo) == 0 and memo.get("allow", snapshot, 0, _no_keys) is None


def test_memo_evicts_the_oldest_answer() -> None:
    snapshot = snapshot_from("")
    memo: DecisionMemo[str] = DecisionMemo(max_entries=2)
    for key in ("a", "b", "c"):
        memo.put(key, snapshot, _decision(Verdict.ALLOW), key.upper())
    assert [memo.get(k, snapshot, 0, _no_keys) for k in "abc"] == [None, "B", "C"]
    memo.put("b", snapshot, _decision(Verdict.ALLOW), "B2")  # re-put: now the newest
    memo.put("d", snapshot, _decision(Verdict.ALLOW), "D")
    assert [memo.get(k, snapshot, 0, _no_keys) for k in "bcd"] == ["B2", None, "D"]


# --- 6. a new generation -----------------------------------------------------------------


def test_the_first_check_after_a_swap_answers_from_the_new_generation(tmp_path: Path) -> None:
    served = serve(tmp_path, policy(_op("paths: [/p]")))
    request = BASE.with_headers(x_foo="1")
    assert codes(served.check(request, request)) == [OK, OK]
    assert served.service.memo.hits == 1
    served.reload(policy(_op("paths: [/p]"), action="DENY", name="deny-p"))
    [denied] = served.check(request)
    assert len(served.service.memo) == 1  # the old generation's answers are let go
    assert denied.status.code == DENIED
    assert denied.dynamic_metadata.fields["generation"].number_value == 2
    assert denied.dynamic_metadata.fields["policy"].string_value == "foo/deny-p"
    assert served.service.memo.hits == 1
    assert codes(served.check(request)) == [DENIED]
    assert served.service.memo.hits == 2  # the new generation's answer is remembered


def test_a_swap_that_changes_only_what_is_read(tmp_path: Path) -> None:
    # The old key did not hold the header the new generation reads.
    served = serve(tmp_path, policy(_op("paths: [/p]")))
    yes, no = BASE.with_headers(x_foo="yes"), BASE.with_headers(x_foo="no")
    assert codes(served.check(yes, no)) == [OK, OK]
    served.reload(policy(when("request.headers[x-foo]", "['yes']")))
    assert codes(served.check(no, yes, no, yes)) == [DENIED, OK, DENIED, OK]


# --- 7. per-route workloads --------------------------------------------------------------

PER_ROUTE = (
    policy(_op("paths: [/a]"), name="a", selector="app: a")
    + policy(_op("paths: [/b]"), name="b", selector="app: b")
    + policy(_op("paths: [/none]"), name="default", selector="app: httpbin")
)


def test_each_workload_gets_its_own_answer(tmp_path: Path) -> None:
    served = serve(tmp_path, PER_ROUTE)
    for_a = replace(BASE, path="/a", extensions=(("namespace", "foo"), ("labels", "app=a")))
    for_b = replace(for_a, extensions=(("labels", "app=b"),))
    default = replace(for_a, extensions=())
    answers = served.check(for_a, for_b, default, for_a, for_b, default)
    assert codes(answers) == [OK, DENIED, DENIED] * 2
    assert served.service.memo.hits == 3
    for request, answer in zip((for_a, for_b, default), answers[3:], strict=True):
        assert wire(answer) == wire(served.fresh(request.build()))
    other_ns = replace(for_a, extensions=(("namespace", "bar"), ("labels", "app=a")))
    assert codes(served.check(other_ns, other_ns)) == [OK, OK]  # no policy applies in bar
    other_path = replace(for_b, path="/b")
    assert codes(served.check(other_path)) == [OK]


def test_route_workloads_follow_their_raw_values_and_the_generation(tmp_path: Path) -> None:
    """Workloads named by context_extensions are looked up once per generation by their raw
    values: `labels` present but empty (no labels) is not `labels` absent (the CLI's)."""
    served = serve(tmp_path, PER_ROUTE)
    empty_labels = replace(BASE, path="/a", extensions=(("namespace", "foo"), ("labels", "")))
    no_labels = replace(BASE, path="/a", extensions=(("namespace", "foo"),))
    answers = served.check(empty_labels, no_labels, empty_labels, no_labels)
    # no labels: no policy selects it, all allowed; the CLI's app=httpbin allows /none only
    assert codes(answers) == [OK, DENIED, OK, DENIED]
    malformed = replace(BASE, extensions=(("labels", "app"),))
    assert codes(served.check(malformed, malformed)) == [DENIED, DENIED]  # fail closed, twice
    for_a = replace(BASE, path="/b", extensions=(("labels", "app=a"),))
    assert codes(served.check(for_a)) == [DENIED]  # a's policy allows /a only
    served.reload(PER_ROUTE.replace("paths: [/a]", "paths: [/b]"))
    assert codes(served.check(for_a)) == [OK]  # the new generation's policy for app=a


# --- 8. remembered answers still count and log -------------------------------------------


def _exposition(served: InProcess) -> str:
    return served.metrics.exposition().decode()


def test_hits_count_in_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    yaml_text = policy(_op("paths: [/admin]"), action="DENY", name="deny-admin")
    yaml_text += policy(_op("methods: [GET]"), action="AUDIT", name="audit-get")
    served = serve(tmp_path, yaml_text)
    served.metrics.watch_memo(served.service.memo)
    admin = replace(BASE, path="/admin")
    answers = served.check(*[BASE] * 5, *[admin] * 3)
    assert codes(answers) == [OK] * 5 + [DENIED] * 3
    assert served.service.memo.hits == 6
    text = _exposition(served)
    assert 'extauthz_checks_total{decision="allow"} 5.0' in text
    assert 'extauthz_checks_total{decision="deny"} 3.0' in text
    assert 'extauthz_checks_total{decision="unauthenticated"} 0.0' in text
    assert "extauthz_check_duration_seconds_count 8.0" in text
    assert 'extauthz_check_duration_seconds_bucket{le="+Inf"} 8.0' in text
    assert 'extauthz_policy_matches_total{action="DENY",mode="enforced",policy="foo/deny-admin"} 3.0' in text  # fmt: skip
    assert 'extauthz_policy_matches_total{action="AUDIT",mode="audit",policy="foo/audit-get"} 8.0' in text  # fmt: skip
    assert 'extauthz_decision_memo_lookups_total{result="hit"} 6.0' in text
    assert 'extauthz_decision_memo_lookups_total{result="miss"} 2.0' in text
    assert "extauthz_decision_memo_entries 2.0" in text


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "extauthz.decision"]


def test_every_check_logs_its_own_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    served = serve(tmp_path, policy(_op("paths: [/p]")), logger=DecisionLogger("all"))
    ids = [BASE.with_headers(x_request_id=f"id-{n}") for n in range(3)]
    elsewhere = replace(ids[0], path="/q", source_ip="10.7.7.7").with_headers(x_request_id="id-q")
    with caplog.at_level(logging.INFO, logger="extauthz.decision"):
        answers = served.check(*ids, elsewhere, elsewhere.with_headers(x_request_id="id-q2"))
    assert served.service.memo.hits == 3  # x-request-id is not part of the key
    assert {wire(a) for a in answers[:3]} == {wire(answers[0])}
    lines = _lines(caplog)
    assert [line["request_id"] for line in lines] == ["id-0", "id-1", "id-2", "id-q", "id-q2"]
    assert [line["path"] for line in lines] == ["/p", "/p", "/p", "/q", "/q"]
    assert [line["source_ip"] for line in lines] == ["192.0.2.10"] * 3 + ["10.7.7.7"] * 2
    assert [line["decision"] for line in lines] == ["allow"] * 3 + ["deny"] * 2
    assert all(line["policy"] == "" and line["generation"] == 1 for line in lines[3:])


def test_remembered_denials_log_with_mode_denials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served = serve(tmp_path, authn() + policy(_op("paths: [/p]")), logger=DecisionLogger("denials"))  # fmt: skip
    denied = replace(BASE, path="/q", headers=bearer(ALICE))
    with caplog.at_level(logging.INFO, logger="extauthz.decision"):
        served.check(BASE, BASE, denied.with_headers(x_request_id="r1"), denied.with_headers(x_request_id="r2"))  # fmt: skip
    assert served.service.memo.hits == 2
    lines = _lines(caplog)
    assert [(line["request_id"], line["decision"]) for line in lines] == [("r1", "deny"), ("r2", "deny")]  # fmt: skip
    assert {line["subject"] for line in lines} == {"alice"}


# --- 9. the local histogram --------------------------------------------------------------


def _series(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_local_check_counts_expose_cumulative_buckets() -> None:
    counts = _LocalCheckCounts()
    registry = CollectorRegistry()
    registry.register(counts)
    for decision, seconds in (("allow", 0.00005), ("allow", 0.0003), ("deny", 0.2), ("unauthenticated", 5.0)):  # fmt: skip
        counts.record(decision, seconds)
    text = generate_latest(registry).decode()
    assert _series(text, "extauthz_check_duration_seconds_bucket") == [
        'extauthz_check_duration_seconds_bucket{le="0.0001"} 1.0',
        'extauthz_check_duration_seconds_bucket{le="0.00025"} 1.0',
        'extauthz_check_duration_seconds_bucket{le="0.0005"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.001"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.0025"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.005"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.01"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.025"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.05"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.1"} 2.0',
        'extauthz_check_duration_seconds_bucket{le="0.5"} 3.0',
        'extauthz_check_duration_seconds_bucket{le="+Inf"} 4.0',
    ]
    [count] = _series(text, "extauthz_check_duration_seconds_count")
    assert count == "extauthz_check_duration_seconds_count 4.0"
    [total] = _series(text, "extauthz_check_duration_seconds_sum")
    assert float(total.split()[1]) == pytest.approx(5.20035)
    assert 'extauthz_checks_total{decision="allow"} 2.0' in text
    assert 'extauthz_checks_total{decision="deny"} 1.0' in text
    assert 'extauthz_checks_total{decision="unauthenticated"} 1.0' in text


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param([0.0001, 0.00025, 0.5], id="on-the-bounds"),
        pytest.param([0.0, 1e-9, 0.00010001, 0.49, 0.51, 60.0], id="around-the-bounds"),
        pytest.param([0.003, 0.003, 0.02, 0.07, 0.3], id="middle"),
    ],
)
def test_local_buckets_match_prometheus_clients_histogram(seconds: list[float]) -> None:
    counts, local = _LocalCheckCounts(), CollectorRegistry()
    local.register(counts)
    reference = CollectorRegistry()
    histogram = Histogram("extauthz_check_duration_seconds", "d", buckets=_LATENCY_BUCKETS, registry=reference)  # fmt: skip
    for value in seconds:
        counts.record("allow", value)
        histogram.observe(value)
    prefixes = ("extauthz_check_duration_seconds_bucket", "extauthz_check_duration_seconds_count")
    for prefix in prefixes:
        assert _series(generate_latest(local).decode(), prefix) == _series(
            generate_latest(reference).decode(), prefix
        )


def test_count_without_duration_and_policy_matches() -> None:
    counts, registry = _LocalCheckCounts(), CollectorRegistry()
    registry.register(counts)
    counts.count("deny")
    counts.count_policies((("foo/p", "DENY", "enforced"), ("foo/a", "AUDIT", "audit")))
    counts.count_policies((("foo/p", "DENY", "enforced"),))
    text = generate_latest(registry).decode()
    assert 'extauthz_checks_total{decision="deny"} 1.0' in text
    assert "extauthz_check_duration_seconds_count 0.0" in text
    assert 'extauthz_policy_matches_total{action="DENY",mode="enforced",policy="foo/p"} 2.0' in text  # fmt: skip
    assert 'extauthz_policy_matches_total{action="AUDIT",mode="audit",policy="foo/a"} 1.0' in text  # fmt: skip
