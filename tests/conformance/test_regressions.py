"""Every difference the generated suite found, kept as a small named case: one
configuration and the requests that told Envoy and extauthz apart. All cases share one pair
of Envoys (a listener per case), so the whole file costs one start-up."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance import gen
from tests.conformance.harness import Case, Difference, Pair, Request

_RNG = random.Random(14)
KEY = gen.make_key(_RNG, "RS256", "k1", with_alg=True)
OTHER = gen.make_key(_RNG, "ES256", "k2", with_alg=True)
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


CLAIMS = [{"header": "x-jwt-sub", "claim": "sub"}]
CASES: dict[str, tuple[list[dict[str, Any]], list[Request]]] = {
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
    # claim_to_headers writes lists and objects as base64 JSON, numbers as doubles.
    "claim-header-values": (
        [authn({"issuer": "iss-a", "jwks": JWKS,
                "outputClaimToHeaders": [{"header": "x-c", "claim": "c"}, {"header": "x-n", "claim": "o.n"}]})],
        [
            get(f"claim {json.dumps(value)}", ("authorization", f"Bearer {token(c=value, o={'n': value})}"))
            for value in (["bar", "x"], {"n": "v"}, [], True, 7, 7.5, -3, 1e21, 12345678901234567890, None, "")
        ],
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def differences(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[Difference]]]:
    cases = []
    for number, (name, (documents, requests)) in enumerate(CASES.items()):
        namespace = f"r{number}"
        placed = [{**d, "metadata": {**d["metadata"], "namespace": namespace}} for d in documents]
        cases.append((name, Case(namespace, placed, list(requests))))
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
