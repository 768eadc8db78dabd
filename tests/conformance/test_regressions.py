"""Every difference the generated suite found, kept as a small named case: one
configuration and the requests that told Envoy and extauthz apart. All cases share one pair
of Envoys (a listener per case), so the whole file costs one start-up. An entry ending in
TLS is a TLS case: its requests present a client certificate (`peer`) and an SNI."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance import gen
from tests.conformance.certs import ClientCert
from tests.conformance.harness import Case, Difference, Pair, Request

_RNG = random.Random(14)
KEY = gen.make_key(_RNG, "RS256", "k1", with_alg=True)
OTHER = gen.make_key(_RNG, "ES256", "k2", with_alg=True)
ED = gen.make_key(_RNG, "EdDSA", "k3", with_alg=True)
HMAC = gen.make_key(_RNG, "HS256", "", with_alg=False)
JWKS = json.dumps({"keys": [KEY.jwk]})
OTHER_JWKS = json.dumps({"keys": [OTHER.jwk]})


def token(issuer: str = "iss-a", key: gen.Key = KEY, **claims: Any) -> str:
    return gen.encode(
        {"alg": key.alg, "kid": key.kid},
        {"iss": issuer, "sub": "alice", "exp": gen.NOW + 3600, **claims},
        key,
    )


GOOD, BOB, CAROL = token(), token(sub="bob"), token(sub="carol")
EXPIRED = token(sub="old", exp=gen.NOW - 1000)
FORGED = GOOD[:-6] + "AAAAAA"
_H, _P, _S = GOOD.split(".")


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def authn(*rules: dict[str, Any], name: str = "ra") -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": name},
        "spec": {"jwtRules": list(rules)},
    }


def get(label: str, *headers: tuple[str, str], path: str = "/", method: str = "GET") -> Request:
    return Request(method, path, "example.com", headers, label)


def allow(*rules: dict[str, Any], action: str = "ALLOW", name: str = "ap") -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name},
        "spec": {"action": action, "rules": list(rules)},
    }


def deny(*rules: dict[str, Any]) -> dict[str, Any]:
    return allow(*rules, action="DENY", name="deny")


def peer(label: str, cert: ClientCert, sni: str | None = "example.com") -> Request:
    return Request("GET", "/", "example.com", (), label, peer=cert, sni=sni)


def spiffe(trust_domain: str, namespace: str, account: str) -> ClientCert:
    return ClientCert.spiffe(trust_domain, namespace, account)


TLS = True  # the third item of a TLS case's entry
SLEEP = spiffe("cluster.local", "prod", "sleep")
TWO_URIS = ClientCert(
    uris=("spiffe://other.mesh/ns/default/sa/default", "spiffe://cluster.local/ns/prod/sa/sleep")
)
HTTPS_URI = ClientCert(uris=("https://cluster.local/ns/prod/sa/sleep",))
NO_SAN = ClientCert(common_name="cluster.local/ns/prod/sa/sleep")

Documents = list[dict[str, Any]]
CLAIMS = [{"header": "x-jwt-sub", "claim": "sub"}]
CASES: dict[str, tuple[Documents, list[Request]] | tuple[Documents, list[Request], bool]] = {
    # Envoy 1.40 checks every token a provider finds; one bad token fails the request.
    "every-token-must-pass": (
        [authn({"issuer": "iss-a", "jwks": JWKS})],
        [
            get("header good, query forged", ("authorization", f"Bearer {GOOD}"), path=f"/?access_token={FORGED}"),
            get("header forged, query good", ("authorization", f"Bearer {FORGED}"), path=f"/?access_token={GOOD}"),
            get("query malformed beside a good header", ("authorization", f"Bearer {GOOD}"), path="/x?access_token=1"),
        ],
    ),
    # Which status several rules report: a real error over an unknown issuer over missing.
    "several-rules-report-envoys-status": (
        [authn({"issuer": "iss-a", "jwks": JWKS, "audiences": ["aud-1"]},
               {"issuer": "iss-b", "jwks": OTHER_JWKS})],
        [
            get("audience of the first rule", ("authorization", f"Bearer {token(aud='other')}")),
            get("second rule's forged token", ("authorization", f"Bearer {token('iss-b', OTHER)[:-4]}AAAA")),
            get("unknown issuer", ("authorization", f"Bearer {token('iss-z')}")),
            get("both issuers", ("authorization", f"Bearer {token(aud='aud-1')}"), path=f"/?access_token={token('iss-b', OTHER)}"),
        ],
    ),
    # A header sent twice is two tokens; authorization is folded by Envoy into one value.
    "repeated-headers": (
        [authn({"issuer": "iss-a", "jwks": JWKS, "outputClaimToHeaders": CLAIMS,
                "fromHeaders": [{"name": "x-jwt"}, {"name": "authorization", "prefix": "Bearer "}]})],
        [
            get("x-jwt twice, both good", ("x-jwt", GOOD), ("x-jwt", BOB)),
            get("x-jwt three times", ("x-jwt", GOOD), ("x-jwt", BOB), ("x-jwt", CAROL)),
            get("x-jwt good then forged", ("x-jwt", GOOD), ("x-jwt", FORGED)),
            get("authorization twice", ("authorization", f"Bearer {GOOD}"), ("authorization", f"Bearer {BOB}")),
        ],
    ),
    # After the prefix, everything is the token; whitespace inside is skipped by base64url.
    "prefix-and-whitespace": (
        [authn({"issuer": "iss-a", "jwks": JWKS})],
        [
            get("extra space after the prefix", ("authorization", f"Bearer  {GOOD}")),
            get("trailing word", ("authorization", f"Bearer {GOOD} trailing")),
            get("trailing comma", ("authorization", f"Bearer {GOOD},x")),
            get("prefix twice", ("authorization", f"Bearer Bearer {GOOD}")),
            get("prefix inside the value", ("authorization", f"xx Bearer {GOOD}")),
            get("space inside the signature", ("authorization", f"Bearer {_H}.{_P}.{_S[:10]} {_S[10:]}")),
            get("lower-case prefix is no token", ("authorization", f"bearer {GOOD}")),
            get("tab after the prefix", ("authorization", f"Bearer \t{GOOD}")),
            get("star after the prefix", ("authorization", f"Bearer *{GOOD}")),
            get("quoted token", ("authorization", f'Bearer "{GOOD}"')),
            get("only stars", ("authorization", "Bearer ***")),
        ],
    ),
    # Envoy reads header locations sorted by name+prefix, then parameters, then cookies, and
    # checks them from the last; each verified token adds its claim headers.
    "location-order": (
        [authn({"issuer": "iss-a", "jwks": JWKS, "outputClaimToHeaders": CLAIMS,
                "fromHeaders": [{"name": "x-token", "prefix": "Tok "}, {"name": "x-jwt"},
                                {"name": "authorization", "prefix": "Bearer "}],
                "fromParams": ["zz", "aa"], "fromCookies": ["session"]})],
        [
            get("three headers", ("x-token", f"Tok {GOOD}"), ("x-jwt", BOB), ("authorization", f"Bearer {CAROL}")),
            get("two parameters", path=f"/?zz={GOOD}&aa={BOB}"),
            get("parameter twice: the first counts", path=f"/?zz={GOOD}&zz={FORGED}"),
            get("cookie in two headers: the first counts", ("cookie", f"session={GOOD}"), ("cookie", f"session={FORGED}")),
            get("expired among good ones", ("x-jwt", GOOD), ("authorization", f"Bearer {EXPIRED}")),
        ],
    ),
    # A token that passes leaves the request: a rule visited later does not find it. Every
    # rule's output headers are cleared of the client's copies, visited or not.
    "passed-tokens-leave-the-request": (
        [authn({"issuer": "iss-a", "jwks": JWKS, "outputClaimToHeaders": CLAIMS},
               {"issuer": "iss-b", "jwks": OTHER_JWKS, "outputClaimToHeaders": [{"header": "x-sub-b", "claim": "sub"}]},
               {"issuer": "iss-c", "jwks": JWKS, "outputClaimToHeaders": [{"header": "x-sub-c", "claim": "sub"}]})],
        [
            get("a in header, b in query", ("authorization", f"Bearer {GOOD}"), path=f"/?access_token={token('iss-b', OTHER)}"),
            get("b in header, a in query", ("authorization", f"Bearer {token('iss-b', OTHER)}"), path=f"/?access_token={GOOD}"),
            get("spoofed output headers", ("x-sub-b", "spoofed"), ("x-sub-c", "spoofed"), ("authorization", f"Bearer {GOOD}")),
            get("spoofed, no token", ("x-jwt-sub", "spoofed"), ("x-sub-c", "spoofed")),
        ],
    ),
    # A valid token whose payload nests deep: Envoy accepts it; extauthz's answer must still
    # parse on Envoy's side (its metadata leaves such a payload out).
    "deeply-nested-payload": (
        [authn({"issuer": "iss-a", "jwks": JWKS})],
        [get(f"nested {depth}", ("authorization", f"Bearer {token(deep=_nested(depth))}")) for depth in (10, 40, 60, 99)],
    ),
    # An Ed25519 key without alg is tried on any token, in the set's order, and a signature
    # that is not 64 bytes long stops the loop there (jwt_verify_lib).
    "ed25519-key-stops-the-loop": (
        [authn({"issuer": "iss-a", "jwks": json.dumps({"keys": [
            {k: v for k, v in ED.jwk.items() if k not in ("kid", "alg")}, KEY.jwk]})})],
        [
            get("RS256 with kid after a kid-less OKP key", ("authorization", f"Bearer {GOOD}")),
            get("HS256 without kid", ("authorization", f"Bearer {token(key=HMAC)}")),
            get("EdDSA token", ("authorization", f"Bearer {token(key=ED)}")),
        ],
    ),
    "ed25519-key-after-the-right-key": (
        [authn({"issuer": "iss-a", "jwks": json.dumps({"keys": [
            KEY.jwk, {k: v for k, v in ED.jwk.items() if k not in ("kid", "alg")}]})})],
        [
            get("RS256 verified before the OKP key", ("authorization", f"Bearer {GOOD}")),
            get("forged RS256", ("authorization", f"Bearer {FORGED}")),
        ],
    ),
    # claim_to_headers writes lists and objects as base64 JSON, numbers as doubles.
    "claim-header-values": (
        [authn({"issuer": "iss-a", "jwks": JWKS,
                "outputClaimToHeaders": [{"header": "x-c", "claim": "c"}, {"header": "x-n", "claim": "o.n"}]})],
        [
            get(f"claim {json.dumps(value)}", ("authorization", f"Bearer {token(c=value, o={'n': value})}"))
            for value in (["bar", "x"], {"n": "v"}, [], True, 7, 7.5, -3, 1e21, 12345678901234567890, None, "")
        ],
    ),
    # The peer's SPIFFE identity as Istio issues it: every source field and `when` key on it
    # (serviceAccounts without a namespace name the policy's). Envoy and extauthz agree.
    "peer-identity-fields": (
        [allow({"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/sleep"]}}]},
               {"from": [{"source": {"namespaces": ["def*"], "trustDomains": ["td-*"]}}]},
               {"from": [{"source": {"serviceAccounts": ["prod/productpage"]}}]},
               {"when": [{"key": "source.principal", "values": ["*/sa/reviews"]},
                         {"key": "source.namespace", "notValues": ["prod"]}]}),
         deny({"from": [{"source": {"notTrustDomains": ["cluster.local", "td-*", "*.mesh"]}}]})],
        [
            peer("principal", SLEEP),
            peer("principal, another account", spiffe("cluster.local", "prod", "ratings")),
            peer("namespace and trust domain", spiffe("td-b.example", "default", "x")),
            peer("namespace, other trust domain", spiffe("other.mesh", "default", "x")),
            peer("service account", spiffe("other.mesh", "prod", "productpage")),
            peer("when principal and namespace", spiffe("td-b", "dev", "reviews")),
            peer("when, excluded namespace", spiffe("td-b", "prod", "reviews")),
            peer("denied trust domain", spiffe("elsewhere", "prod", "sleep")),
            peer("without SNI", SLEEP, sni=None),
        ],
        TLS,
    ),
    # The shipped ext_authz filter (envoy/*.yaml) has no `include_tls_session: true`, so
    # extauthz never sees the SNI that RBAC's requested_server_name reads: `connection.sni`
    # is absent to extauthz (values never match, notValues always do).
    "connection-sni-reaches-extauthz": (
        [allow({"when": [{"key": "connection.sni", "values": ["example.com", "*.example.org"]}]}),
         deny({"when": [{"key": "connection.sni", "notValues": ["*.example.com", "example.com"]}]})],
        [
            peer("SNI allowed", SLEEP, sni="example.com"),
            peer("SNI allowed by suffix", SLEEP, sni="api.example.org"),
            peer("SNI denied", SLEEP, sni="other.org"),
            peer("no SNI", SLEEP, sni=None),
        ],
        TLS,
    ),
    # Envoy's TLS inspector lower-cases the SNI RBAC matches; ext_authz's tls_session.sni is
    # the server name as the client sent it.
    "connection-sni-is-lower-cased": (
        [allow({"when": [{"key": "connection.sni", "values": ["api.example.com"]}]},
               {"when": [{"key": "connection.sni", "values": ["UP.Example.com"]}]})],
        [
            peer("upper-case SNI, lower-case value", SLEEP, sni="API.Example.com"),
            peer("lower-case SNI", SLEEP, sni="api.example.com"),
            peer("upper-case SNI, upper-case value", SLEEP, sni="UP.Example.com"),
        ],
        TLS,
    ),
    # RBAC's `authenticated` tries every URI SAN of the peer certificate; ext_authz sends
    # only the first as attributes.source.principal (the whole PEM is in
    # attributes.source.certificate, include_peer_certificate: true).
    "every-uri-san-is-the-peer": (
        [allow({"from": [{"source": {"principals": ["cluster.local/ns/prod/sa/sleep"]}}]},
               {"from": [{"source": {"namespaces": ["prod"]}}]},
               {"from": [{"source": {"trustDomains": ["cluster.local"]}}]},
               {"from": [{"source": {"serviceAccounts": ["prod/sleep"]}}]},
               {"when": [{"key": "source.principal", "values": ["cluster.local/ns/prod/sa/sleep"]}]},
               {"when": [{"key": "source.namespace", "values": ["prod"]}]}),
         deny({"from": [{"source": {"notPrincipals": ["cluster.local/*"]}}]})],
        [peer("second uri matches", TWO_URIS)],
        TLS,
    ),
    # Istio's principal patterns carry the spiffe:// prefix: `*x` is the regex spiffe://.*x,
    # so a peer that is no SPIFFE id (another URI scheme; no SAN, where Envoy's principal is
    # the subject) never matches a suffix, where extauthz matches the suffix on the whole
    # principal.
    "principal-suffix-needs-spiffe": (
        [deny({"from": [{"source": {"principals": ["*/sa/sleep"]}}]},
              {"when": [{"key": "source.principal", "values": ["*sleep"]}]})],
        [
            peer("https uri", HTTPS_URI),
            peer("no SAN, subject CN=...sleep", NO_SAN),
            peer("spiffe uri", SLEEP),
        ],
        TLS,
    ),
    # istiod's namespace matcher is the regex .*/ns/<value>/.* over the whole URI (a `*` in the
    # value is .*): any /ns/ segment counts, and a wildcard spans slashes; extauthz reads the
    # first /ns/<segment>/ only.
    "namespace-anywhere-in-the-uri": (
        [allow({"from": [{"source": {"namespaces": ["default"]}}]},
               {"from": [{"source": {"namespaces": ["*ult"]}}]},
               {"when": [{"key": "source.namespace", "values": ["other"]}]})],
        [
            peer("a second /ns/ segment", ClientCert(uris=("spiffe://cluster.local/ns/prod/sa/sleep/ns/default/x",))),
            peer("a wildcard across slashes", ClientCert(uris=("spiffe://cluster.local/ns/prod/sa/default/x",))),
            peer("when: a second /ns/ segment", ClientCert(uris=("spiffe://cluster.local/ns/prod/sa/ns/other/x",))),
            peer("one namespace", spiffe("cluster.local", "default", "sleep")),
        ],
        TLS,
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def differences(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[Difference]]]:
    cases = []
    for number, (name, (documents, requests, *tls)) in enumerate(CASES.items()):
        namespace = f"r{number}"
        placed = [{**d, "metadata": {**d["metadata"], "namespace": namespace}} for d in documents]
        cases.append((name, Case(namespace, placed, list(requests), tls=bool(tls and tls[0]))))
    pair = Pair(Path(tmp_path_factory.mktemp("regressions")), [case for _, case in cases])
    try:
        pair.start()
        _, found = asyncio.run(pair.compare())
    finally:
        pair.stop()
    by_namespace = {case.namespace: name for name, case in cases}
    grouped: dict[str, list[Difference]] = {name: [] for name in CASES}
    for difference in found:
        grouped[by_namespace[difference.case.namespace]].append(difference)
    yield grouped


@pytest.mark.parametrize("name", list(CASES))
def test_regression_case_answers_alike(name: str, differences: dict[str, list[Difference]]) -> None:
    found = differences[name]
    assert not found, "\n".join(d.report() for d in found[:3])
