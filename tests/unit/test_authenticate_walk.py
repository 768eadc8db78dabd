"""authenticate._walk_one, the closed form of istiod's tree for one JWTRule and one token,
must give what walking the tree (authenticate._walk) gives: the same verdict, the same checks
and the same events, for every rule shape and every way a token can pass or fail."""

from __future__ import annotations

import itertools

import pytest

from extauthz.attributes import RequestAttributes
from extauthz.authn import authenticate as authenticate_module
from extauthz.authn.authenticate import _walk, _walk_one, authenticate
from extauthz.authn.authenticator import Authenticator
from extauthz.authn.cache import TokenCache
from extauthz.authn.extract import extract_tokens
from extauthz.authn.keys import KeySet
from extauthz.authn.providers import ProviderSet
from extauthz.authn.verifier import AnyNode, ProviderNode
from tests.support.config import request_authentication, snapshot_from
from tests.support.tokens import ISSUER, NOW, claims, ec_key, hmac_key, jwks_of, rsa_key

KEY, OTHER, EC, HMAC = rsa_key(), rsa_key(kid="other"), ec_key(), hmac_key()
JWKS = jwks_of(KEY, EC)

RULES = {
    "default": "",
    "own-header": "fromHeaders: [{name: x-jwt, prefix: 'Token '}]",
    "forwarded": "forwardOriginalToken: true",
    "audiences": "audiences: [api, web]",
    "claim-headers": "outputClaimToHeaders: [{header: x-sub, claim: sub}, {header: x-g, claim: groups}]",
    "payload-header": "outputPayloadToHeader: x-payload",
    "query-only": "fromParams: [token]",
}  # fmt: skip
TOKENS = {
    "good": KEY.sign(claims(aud="api", groups=["a", "b"])),
    "good-ec": EC.sign(claims(aud=["web"])),
    "no-audience": KEY.sign(claims()),
    "expired": KEY.sign(claims(exp=NOW - 61)),
    "not-yet-valid": KEY.sign(claims(nbf=NOW + 61)),
    "wrong-issuer": KEY.sign(claims(iss="https://elsewhere")),
    "forged": OTHER.sign(claims(), headers={"kid": KEY.jwk["kid"]}),
    "unknown-kid": OTHER.sign(claims()),
    "hmac-confusion": HMAC.sign(claims(), headers={"kid": KEY.jwk["kid"]}),
    "bad-json": "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
    "garbage": "not-a-token",
}  # fmt: skip


def no_remote(uri: str, now: float) -> KeySet | None:
    return None


def _providers(rule: str) -> ProviderSet:
    return snapshot_from(request_authentication(JWKS, ISSUER, RULES[rule])).providers


def _request(rule: str, token: str) -> RequestAttributes:
    if rule == "own-header":
        return RequestAttributes(headers={"x-jwt": f"Token {token}"})
    if rule == "query-only":
        return RequestAttributes(query=f"token={token}")
    return RequestAttributes(headers={"authorization": f"Bearer {token}"})


def test_one_rule_is_the_shape_walked_in_closed_form() -> None:
    providers = _providers("default")
    assert providers.single_provider
    assert providers.verifier == AnyNode((ProviderNode(0),), allow_missing=True)
    two_rules = request_authentication(JWKS, ISSUER) + f"  - issuer: other\n    jwks: '{JWKS}'\n"
    two = snapshot_from(two_rules).providers
    assert len(two.providers) == 2 and not two.single_provider


@pytest.mark.parametrize(("rule", "name"), list(itertools.product(RULES, TOKENS)))
def test_closed_form_equals_the_walk(rule: str, name: str) -> None:
    providers = _providers(rule)
    [provider] = providers.providers
    [found] = extract_tokens(_request(rule, TOKENS[name]), provider.locations)
    for cache in (None, TokenCache()):
        # The same token twice through one cache: the second answer comes from it.
        for _ in range(2):
            one = _walk_one(found, provider, Authenticator(no_remote, NOW, cache))
            walked = _walk([[found]], providers, Authenticator(no_remote, NOW, cache))
            assert one == walked


def test_authenticate_takes_the_closed_form_for_one_token_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    walks: list[str] = []
    real_one, real_walk = authenticate_module._walk_one, authenticate_module._walk
    monkeypatch.setattr(authenticate_module, "_walk_one", lambda *a: walks.append("one") or real_one(*a))  # type: ignore[func-returns-value]  # fmt: skip
    monkeypatch.setattr(authenticate_module, "_walk", lambda *a: walks.append("walk") or real_walk(*a))  # type: ignore[func-returns-value]  # fmt: skip
    providers = _providers("default")
    good = TOKENS["good"]
    assert authenticate(_request("default", good), providers, no_remote, NOW).is_ok
    two = RequestAttributes(
        headers={"authorization": f"Bearer {good}"}, query=f"access_token={good}"
    )
    assert authenticate(two, providers, no_remote, NOW).is_ok
    assert walks == ["one", "walk"]
