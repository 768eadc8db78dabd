"""Remembered answers (decision_memo.py) keyed by the request values a decision reads:
a remembered answer must equal a fresh one, whatever the request, token, key set,
generation or per-route workload."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from envoy.service.auth.v3 import external_auth_pb2

from extauthz.authn.cache import TokenCache
from extauthz.authn.keys import KeySet, parse_jwks
from extauthz.authn.result import ALWAYS, AuthnResult, Validity
from extauthz.authn.status import JwtStatus
from extauthz.decision import Decision, Verdict, decide
from extauthz.decision_memo import DecisionMemo
from extauthz.server.envoy_api import decision_key, to_attributes
from tests.support.checks import (
    ALICE,
    BASE,
    BOB,
    COOKIE_TOKENS,
    DENIED,
    JWKS,
    NOW,
    OK,
    OTHER_ISSUER,
    OTHER_JWKS,
    REMOTE_URI,
    TOKENS,
    UNAUTHENTICATED,
    Req,
    authn,
    bearer,
    codes,
    op,
    other_token,
    policy,
    remote_authn,
    serve,
    src,
    token,
    when,
    wire,
)
from tests.support.config import snapshot_from
from tests.support.tokens import ISSUER

# --- 1. a remembered answer equals a freshly decided one ---------------------------------

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


# --- 2. requests differing in one value the decision reads --------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "hops", "first", "second", "expected"),
    [
        pytest.param(policy(when("request.headers[X-Foo]", "['yes']")), 0, BASE.with_headers(x_foo="yes"), BASE.with_headers(x_foo="no"), (OK, DENIED), id="when-header"),
        pytest.param(policy(when("request.headers[X-Foo]", "['yes']")), 0, BASE.with_headers(x_foo="yes"), BASE, (OK, DENIED), id="when-header-absent"),
        pytest.param(policy(src("ipBlocks: [10.0.0.0/8]")), 0, replace(BASE, source_ip="10.1.1.1"), replace(BASE, source_ip="192.0.2.1"), (OK, DENIED), id="ip-blocks"),
        pytest.param(policy(when("source.ip", "[10.0.0.0/8]")), 0, replace(BASE, source_ip="10.1.1.1"), replace(BASE, source_ip="192.0.2.1"), (OK, DENIED), id="when-source-ip"),
        pytest.param(policy(src("remoteIpBlocks: [203.0.113.0/24]")), 1, BASE.with_headers(x_forwarded_for="203.0.113.7, 10.0.0.2"), BASE.with_headers(x_forwarded_for="198.51.100.1, 10.0.0.2"), (OK, DENIED), id="remote-ip-blocks-xff-one-trusted-hop"),
        # x-forwarded-for names the client only through trusted hops (measured: Envoy 1.40).
        pytest.param(policy(src("remoteIpBlocks: [203.0.113.0/24]")), 1, BASE.with_headers(x_forwarded_for="203.0.113.7, 10.0.0.2"), BASE.with_headers(x_forwarded_for="10.0.0.2, 203.0.113.7"), (OK, DENIED), id="remote-ip-blocks-xff-one-trusted-hop"),
        pytest.param(policy(src("remoteIpBlocks: [203.0.113.0/24]")), 0, replace(BASE, source_ip="203.0.113.7"), replace(BASE, source_ip="10.0.0.2"), (OK, DENIED), id="remote-ip-without-xff-is-the-peer"),
        pytest.param(policy(when("remote.ip", "[203.0.113.0/24]")), 1, BASE.with_headers(x_forwarded_for="203.0.113.7, 10.9.9.9"), BASE.with_headers(x_forwarded_for="198.51.100.1, 10.9.9.9"), (OK, DENIED), id="when-remote-ip"),
        pytest.param(policy(op("ports: ['8080']")), 0, replace(BASE, destination_port=8080), replace(BASE, destination_port=9090), (OK, DENIED), id="ports"),
        pytest.param(policy(when("destination.port", "['8080']")), 0, replace(BASE, destination_port=8080), replace(BASE, destination_port=9090), (OK, DENIED), id="when-destination-port"),
        pytest.param(policy(when("destination.ip", "[10.0.0.0/8]")), 0, replace(BASE, destination_ip="10.0.0.5"), replace(BASE, destination_ip="172.16.0.5"), (OK, DENIED), id="when-destination-ip"),
        pytest.param(policy(when("connection.sni", "[a.example]")), 0, replace(BASE, sni="a.example"), replace(BASE, sni="b.example"), (OK, DENIED), id="sni"),
        pytest.param(policy(src("principals: [cluster.local/ns/foo/sa/sleep]")), 0, replace(BASE, principal="spiffe://cluster.local/ns/foo/sa/sleep"), replace(BASE, principal="spiffe://cluster.local/ns/foo/sa/other"), (OK, DENIED), id="principals"),
        pytest.param(policy(when("source.principal", "[cluster.local/ns/foo/sa/sleep]")), 0, replace(BASE, principal="spiffe://cluster.local/ns/foo/sa/sleep"), replace(BASE, principal=""), (OK, DENIED), id="when-source-principal"),
        pytest.param(policy(src("namespaces: [foo]")), 0, replace(BASE, principal="spiffe://cluster.local/ns/foo/sa/x"), replace(BASE, principal="spiffe://cluster.local/ns/bar/sa/x"), (OK, DENIED), id="namespaces"),
        pytest.param(policy(op("hosts: [a.example]")), 0, replace(BASE, host="a.example"), replace(BASE, host="b.example"), (OK, DENIED), id="hosts"),
        pytest.param(policy(op("methods: [GET]")), 0, BASE, replace(BASE, method="POST"), (OK, DENIED), id="methods"),
        pytest.param(policy(op("paths: [/p]")), 0, BASE, replace(BASE, path="/q"), (OK, DENIED), id="paths"),
        pytest.param(authn() + policy(src(f"requestPrincipals: [{ISSUER}/alice]")), 0, replace(BASE, headers=bearer(ALICE)), replace(BASE, headers=bearer(BOB)), (OK, DENIED), id="token-in-authorization"),
        pytest.param(authn() + policy(src(f"requestPrincipals: [{ISSUER}/alice]")), 0, replace(BASE, path=f"/p?access_token={ALICE}"), replace(BASE, path=f"/p?access_token={BOB}"), (OK, DENIED), id="token-in-access-token-param"),
        pytest.param(authn("fromHeaders: [{name: X-Jwt}]") + policy(src(f"requestPrincipals: [{ISSUER}/alice]")), 0, BASE.with_headers(x_jwt=ALICE), BASE.with_headers(x_jwt=BOB), (OK, DENIED), id="token-in-custom-header"),
        pytest.param(authn("fromCookies: [session]") + policy(src(f"requestPrincipals: [{ISSUER}/alice]")), 0, BASE.with_headers(cookie=f"session={ALICE}"), BASE.with_headers(cookie=f"session={BOB}"), (OK, DENIED), id="token-in-cookie"),
        pytest.param(authn() + policy(when("request.auth.claims[groups]", "[dev]")), 0, replace(BASE, headers=bearer(ALICE)), replace(BASE, headers=bearer(TOKENS["alice-ops"])), (OK, DENIED), id="claim"),
        pytest.param(authn("outputClaimToHeaders: [{header: x-team, claim: team}]"), 0, replace(BASE, headers=bearer(token(team="blue"))), replace(BASE, headers=bearer(token(team="red"))), (OK, OK), id="claim-to-header-same-principal"),
        pytest.param(policy(src("ipBlocks: [10.0.0.0/8]"), action="AUDIT"), 0, replace(BASE, source_ip="10.1.1.1"), replace(BASE, source_ip="192.0.2.1"), (OK, OK), id="audit-metadata-differs"),
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
    served = serve(tmp_path, policy(src("ipBlocks: [10.0.0.0/8]")))
    one = replace(BASE, source_ip="10.1.1.1")
    others = [one.with_headers(x_anything="1"), replace(one, sni="x"), replace(one, destination_port=1)]  # fmt: skip
    answers = served.check(one, *others)
    assert served.service.memo.hits == 3
    assert {wire(a) for a in answers} == {wire(answers[0])}


# --- 3. never remembered ------------------------------------------------------------------


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
    served = serve(tmp_path, authn() + policy(op("methods: [GET]")))
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


def test_header_map_requests_are_remembered_by_their_entries(tmp_path: Path) -> None:
    # encode_raw_headers (the shipped Envoy configs set it) sends a raw header map.
    served = serve(tmp_path, policy(when("request.headers[X-Foo]", "['yes']")))
    yes, no = _header_map_request(x_foo="yes"), _header_map_request(x_foo="no")
    assert codes(served.check(yes, no, yes, no)) == [OK, DENIED, OK, DENIED]
    memo = served.service.memo
    assert (memo.hits, memo.misses, len(memo)) == (2, 2, 2)


def test_accepted_beside_a_not_yet_valid_token_is_not_remembered(tmp_path: Path) -> None:
    # The first rule's token is not valid yet, so the second rule's cookie lets the request
    # in. Once it becomes valid, the first rule passes and its payload is the identity.
    served = serve(tmp_path, BROAD)
    soon = token(nbf=NOW + 3000)
    request = replace(BASE, path="/other/items", headers=bearer(soon)).with_headers(cookie=f"session={other_token()}")  # fmt: skip
    assert codes(served.check(request, request)) == [OK, OK]
    assert (served.service.memo.hits, len(served.service.memo)) == (0, 0)


def test_a_token_the_walk_never_checks_does_not_matter(tmp_path: Path) -> None:
    # The first rule accepts the header's token, so (as in Envoy) the second rule never looks
    # at the cookie: its not-yet-valid token cannot change the answer, which is remembered.
    served = serve(tmp_path, BROAD)
    soon = other_token(nbf=NOW + 3000)
    request = replace(BASE, path="/api/items", headers=bearer(ALICE)).with_headers(cookie=f"session={soon}")  # fmt: skip
    assert codes(served.check(request, request)) == [OK, OK]
    assert (served.service.memo.hits, len(served.service.memo)) == (1, 1)


# --- 4. validity: time and key sets ------------------------------------------------------


def _no_keys(uri: str, now: float) -> KeySet | None:
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
    assert validity.holds(0, lambda uri, now: keys)
    assert not validity.holds(0, lambda uri, now: same_content)  # replaced, if equal
    assert not validity.holds(0, _no_keys)  # gone (stale)
    arrived = Validity(remote_keys=((REMOTE_URI, None),))
    assert not arrived.holds(0, lambda uri, now: keys)


def test_an_answer_is_remembered_while_its_token_is_inside_nbf_exp_and_the_skew(
    tmp_path: Path,
) -> None:
    served = serve(tmp_path, authn())
    now = int(time.time())  # Check reads the clock: times relative to now, not to import
    nbf, exp = now - 10, now + 600
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
    exp = int(time.time()) + 100  # Check reads the clock: relative to now, not to import
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
    # One rule, two tokens (header and access_token): both are checked, both must hold.
    served = serve(tmp_path, BROAD)
    header_exp, query_exp = NOW + 900, NOW + 300
    query_token = token(exp=query_exp, nbf=NOW - 5)
    request = replace(BASE, path=f"/api/items?access_token={query_token}", headers=bearer(token(exp=header_exp)))  # fmt: skip
    attrs = to_attributes(request.build())
    decision = decide(attrs, served.store.current, served.keys.keys, NOW, TokenCache())
    assert decision.is_allowed
    assert decision.authn.validity == Validity(NOW - 5 - 60, query_exp + 60, ())


def test_a_replaced_remote_key_set_ends_the_answer(tmp_path: Path) -> None:
    served = serve(tmp_path, remote_authn() + policy(src("requestPrincipals: ['*']")))
    served.keys.record_success(REMOTE_URI, parse_jwks(JWKS), time.time())
    request = replace(BASE, headers=bearer(ALICE)).build()
    memo = served.service.memo
    assert codes(served.check(request, request)) == [OK, OK]
    assert memo.hits == 1

    snapshot = served.store.current
    key = decision_key(request.attributes, snapshot.inputs, id(snapshot))
    old = served.keys.keys(REMOTE_URI, NOW)
    served.keys.record_success(REMOTE_URI, parse_jwks(JWKS), time.time())  # same keys, new set
    assert memo.get(key, snapshot, NOW, lambda uri, now: old) is not None
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
    return Decision(verdict, 200, "r", AuthnResult(JwtStatus.Ok, validity=validity), generation_number=generation)  # fmt: skip


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


# --- 5. a new generation -----------------------------------------------------------------


def test_the_first_check_after_a_swap_answers_from_the_new_generation(tmp_path: Path) -> None:
    served = serve(tmp_path, policy(op("paths: [/p]")))
    request = BASE.with_headers(x_foo="1")
    assert codes(served.check(request, request)) == [OK, OK]
    assert served.service.memo.hits == 1
    served.reload(policy(op("paths: [/p]"), action="DENY", name="deny-p"))
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
    served = serve(tmp_path, policy(op("paths: [/p]")))
    yes, no = BASE.with_headers(x_foo="yes"), BASE.with_headers(x_foo="no")
    assert codes(served.check(yes, no)) == [OK, OK]
    served.reload(policy(when("request.headers[x-foo]", "['yes']")))
    assert codes(served.check(no, yes, no, yes)) == [DENIED, OK, DENIED, OK]


# --- 6. per-route workloads --------------------------------------------------------------

PER_ROUTE = (
    policy(op("paths: [/a]"), name="a", selector="app: a")
    + policy(op("paths: [/b]"), name="b", selector="app: b")
    + policy(op("paths: [/none]"), name="default", selector="app: httpbin")
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
