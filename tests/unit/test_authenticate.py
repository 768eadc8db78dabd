from __future__ import annotations

from typing import Any

import pytest

from extauthz.attributes import RequestAttributes
from extauthz.authn.authenticate import authenticate
from extauthz.authn.cache import TokenCache
from extauthz.authn.keys import KeySet, parse_jwks
from extauthz.authn.providers import JwksSource
from extauthz.authn.status import JwtStatus
from tests.support.config import request_authentication, snapshot_from
from tests.support.tokens import ISSUER, NOW, claims, jwks_of, rsa_key

KEY = rsa_key()
OTHER = rsa_key(kid="other")
JWKS = jwks_of(KEY)
PROVIDERS = snapshot_from(request_authentication(JWKS, ISSUER)).providers
REMOTE_PROVIDERS = snapshot_from(
    "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
    "metadata: {name: jwt, namespace: foo}\n"
    f"spec:\n  jwtRules:\n  - issuer: {ISSUER}\n    jwksUri: http://127.0.0.1:1/keys\n"
).providers


def no_remote(uri: str, now: float) -> KeySet | None:
    return None


def bearer(token: str) -> RequestAttributes:
    return RequestAttributes(headers={"authorization": f"Bearer {token}"})


TOKENS = {
    "good": KEY.sign(claims()),
    "expired": KEY.sign(claims(exp=NOW - 61)),
    "expired-within-skew": KEY.sign(claims(exp=NOW - 60)),
    "not-yet-valid": KEY.sign(claims(nbf=NOW + 61)),
    "wrong-issuer": KEY.sign(claims(iss="https://elsewhere")),
    "wrong-key": OTHER.sign(claims(), headers={"kid": KEY.jwk["kid"]}),
    "unknown-kid": OTHER.sign(claims()),
    "garbage": "not-a-token",
}


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("good", JwtStatus.Ok),
        ("expired", JwtStatus.JwtExpired),
        ("expired-within-skew", JwtStatus.Ok),
        ("not-yet-valid", JwtStatus.JwtNotYetValid),
        ("wrong-issuer", JwtStatus.JwtUnknownIssuer),
        ("wrong-key", JwtStatus.JwtVerificationFail),
        ("unknown-kid", JwtStatus.JwksKidAlgMismatch),
        ("garbage", JwtStatus.JwtBadFormat),
    ],
)
def test_named_tokens(name: str, status: JwtStatus) -> None:
    result = authenticate(bearer(TOKENS[name]), PROVIDERS, no_remote, NOW)
    assert result.status is status
    assert result.has_identity is (status is JwtStatus.Ok)


def test_good_token_gives_istio_request_principal_and_strips_header() -> None:
    result = authenticate(bearer(TOKENS["good"]), PROVIDERS, no_remote, NOW)
    assert result.principal == f"{ISSUER}/alice"
    assert result.claims["sub"] == "alice"
    assert result.headers_to_remove == ("authorization",)


def test_no_token_passes_without_identity() -> None:
    result = authenticate(RequestAttributes(), PROVIDERS, no_remote, NOW)
    assert result.is_ok and not result.has_identity


def test_non_bearer_authorization_is_no_token() -> None:
    result = authenticate(
        RequestAttributes(headers={"authorization": "Basic dXNlcjpwYXNz"}),
        PROVIDERS,
        no_remote,
        NOW,
    )
    assert result.is_ok and not result.has_identity


def test_access_token_query_parameter_is_read_and_removed() -> None:
    attrs = RequestAttributes(query=f"a=1&access_token={TOKENS['good']}")
    result = authenticate(attrs, PROVIDERS, no_remote, NOW)
    assert result.principal == f"{ISSUER}/alice"
    assert result.params_to_remove == ("access_token",)


@pytest.mark.parametrize(
    ("header", "query", "status"),
    [
        pytest.param("good", "wrong-key", JwtStatus.JwtVerificationFail, id="good-first-then-bad"),
        pytest.param("wrong-key", "good", JwtStatus.JwtVerificationFail, id="bad-first-then-good"),
        pytest.param(
            "expired", "wrong-key", JwtStatus.JwtVerificationFail, id="both-bad-last-reported"
        ),
        pytest.param(
            "wrong-key", "expired", JwtStatus.JwtExpired, id="both-bad-last-checked-first"
        ),
    ],
)
def test_two_tokens_must_both_be_good(header: str, query: str, status: JwtStatus) -> None:
    # Istio's OR{provider, allow_missing}: the provider checks its tokens from the last found
    # to the first (headers come before query parameters) and the first failure fails the
    # request, whatever the other token is (measured against Envoy 1.40).
    attrs = RequestAttributes(
        headers={"authorization": f"Bearer {TOKENS[header]}"},
        query=f"access_token={TOKENS[query]}",
    )
    result = authenticate(attrs, PROVIDERS, no_remote, NOW)
    assert result.status is status
    assert (result.headers_to_remove, result.params_to_remove, result.claims) == ((), (), {})


def test_audiences() -> None:
    providers = snapshot_from(request_authentication(JWKS, ISSUER, "audiences: [api]")).providers
    allowed = KEY.sign(claims(aud=["other", "api"]))
    denied = KEY.sign(claims(aud="other"))
    assert authenticate(bearer(allowed), providers, no_remote, NOW).is_ok
    result = authenticate(bearer(denied), providers, no_remote, NOW)
    assert result.status is JwtStatus.JwtAudienceNotAllowed


def test_remote_jwks_without_keys_fails_closed() -> None:
    providers = REMOTE_PROVIDERS
    assert providers.jwks_sources == {
        "http://127.0.0.1:1/keys": JwksSource("http://127.0.0.1:1/keys", 5.0)
    }
    token = TOKENS["good"]
    assert authenticate(bearer(token), providers, no_remote, NOW).status is JwtStatus.JwksFetchFail
    keys = parse_jwks(JWKS)
    assert authenticate(bearer(token), providers, lambda uri, now: keys, NOW).is_ok


def test_forward_original_token_keeps_header() -> None:
    providers = snapshot_from(
        request_authentication(JWKS, ISSUER, "forwardOriginalToken: true")
    ).providers
    result = authenticate(bearer(TOKENS["good"]), providers, no_remote, NOW)
    assert result.is_ok and result.headers_to_remove == ()


def test_cache_hit_still_checks_expiry() -> None:
    cache = TokenCache()
    token = KEY.sign(claims(exp=NOW + 10))
    first = authenticate(bearer(token), PROVIDERS, no_remote, NOW, cache)
    assert first.is_ok
    assert authenticate(bearer(token), PROVIDERS, no_remote, NOW, cache) is first  # remembered
    assert authenticate(bearer(token), PROVIDERS, no_remote, NOW + 70, cache) is first
    later = authenticate(bearer(token), PROVIDERS, no_remote, NOW + 71, cache)
    assert later.status is JwtStatus.JwtExpired


def test_remembered_outcome_is_dropped_when_remote_keys_rotate() -> None:
    providers = REMOTE_PROVIDERS
    cache = TokenCache()
    keys = {"now": parse_jwks(JWKS)}

    def current(uri: str, now: float) -> KeySet | None:
        return keys["now"]

    token = TOKENS["good"]
    assert authenticate(bearer(token), providers, current, NOW, cache).is_ok
    keys["now"] = parse_jwks(jwks_of(OTHER))  # rotated: KEY is gone
    after = authenticate(bearer(token), providers, current, NOW, cache)
    assert after.status is JwtStatus.JwksKidAlgMismatch


def test_not_yet_valid_token_is_not_remembered_as_failure() -> None:
    cache = TokenCache()
    token = KEY.sign(claims(nbf=NOW + 100))
    assert (
        authenticate(bearer(token), PROVIDERS, no_remote, NOW, cache).status
        is JwtStatus.JwtNotYetValid
    )
    assert authenticate(bearer(token), PROVIDERS, no_remote, NOW + 41, cache).is_ok


def test_cache_entry_is_dropped_with_its_key_set() -> None:
    cache = TokenCache()
    token = TOKENS["good"]
    old_keys, new_keys = parse_jwks(JWKS), parse_jwks(jwks_of(OTHER))
    cache.put(token, old_keys, object())  # type: ignore[arg-type]
    assert cache.get(token, old_keys) is not None
    assert cache.get(token, new_keys) is None


def test_no_providers_means_anonymous_even_with_a_token() -> None:
    providers = snapshot_from("").providers
    result = authenticate(bearer(TOKENS["garbage"]), providers, no_remote, NOW)
    assert result.is_ok and not result.has_identity


def test_remembered_outcome_depends_on_where_the_token_was() -> None:
    cache = TokenCache()
    token = TOKENS["good"]
    in_header = authenticate(bearer(token), PROVIDERS, no_remote, NOW, cache)
    in_query = authenticate(
        RequestAttributes(query=f"access_token={token}"), PROVIDERS, no_remote, NOW, cache
    )
    assert (in_header.headers_to_remove, in_header.params_to_remove) == (("authorization",), ())
    assert (in_query.headers_to_remove, in_query.params_to_remove) == ((), ("access_token",))


def _counting_verify(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each signature verification authenticate asks for (the real one still runs)."""
    from extauthz.authn import authenticate as module

    calls: list[str] = []
    real = module.verify_signature

    def counting(jwt: Any, keys: KeySet) -> JwtStatus:
        calls.append(jwt.token)
        return real(jwt, keys)

    monkeypatch.setattr(module, "verify_signature", counting)
    return calls


def test_wrong_signature_is_verified_once_per_key_set(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_verify(monkeypatch)
    cache = TokenCache()
    keys = {"now": parse_jwks(JWKS)}

    def current(uri: str, now: float) -> KeySet | None:
        return keys["now"]

    token = TOKENS["wrong-key"]
    for _ in range(3):
        result = authenticate(bearer(token), REMOTE_PROVIDERS, current, NOW, cache)
        assert result.status is JwtStatus.JwtVerificationFail
    assert calls == [token]
    keys["now"] = parse_jwks(JWKS)  # the same keys, fetched again: a new key set object
    result = authenticate(bearer(token), REMOTE_PROVIDERS, current, NOW, cache)
    assert result.status is JwtStatus.JwtVerificationFail
    assert calls == [token, token]


def test_remembered_rejection_still_checks_time_and_issuer_first() -> None:
    cache = TokenCache()
    token = OTHER.sign(claims(exp=NOW + 30), headers={"kid": KEY.jwk["kid"]})
    assert authenticate(bearer(token), PROVIDERS, no_remote, NOW, cache).status is (
        JwtStatus.JwtVerificationFail
    )
    later = authenticate(bearer(token), PROVIDERS, no_remote, NOW + 100, cache)
    assert later.status is JwtStatus.JwtExpired  # Envoy checks time before the signature


def test_unknown_kid_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_verify(monkeypatch)
    cache = TokenCache()
    token = TOKENS["unknown-kid"]
    for _ in range(2):
        result = authenticate(bearer(token), PROVIDERS, no_remote, NOW, cache)
        assert result.status is JwtStatus.JwksKidAlgMismatch
    assert calls == [token, token]  # fresh keys could cure it: always asked again


def test_a_token_read_by_two_rules_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from extauthz.authn import authenticate as module

    parsed: list[str] = []
    real = module.parse_jwt

    def counting(token: str, headers: Any) -> Any:
        parsed.append(token)
        return real(token, headers)

    monkeypatch.setattr(module, "parse_jwt", counting)
    two_rules = snapshot_from(
        request_authentication(JWKS, "https://first.example")
        + "---"
        + request_authentication(JWKS, ISSUER).replace("name: jwt", "name: second")
    ).providers
    assert len(two_rules.providers) == 2
    result = authenticate(bearer(TOKENS["good"]), two_rules, no_remote, NOW, TokenCache())
    assert result.is_ok and result.issuer == ISSUER
    assert parsed == [TOKENS["good"]]


def test_remembered_rejections_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone can mint tokens whose signature fails: a long one is not kept at all, and
    only the last MAX_REJECTED are."""
    from extauthz.authn.cache import MAX_REJECTED, MAX_REJECTED_TOKEN_CHARS

    calls = _counting_verify(monkeypatch)
    cache = TokenCache()
    long_token = OTHER.sign(
        claims(padding="x" * MAX_REJECTED_TOKEN_CHARS), headers={"kid": KEY.jwk["kid"]}
    )
    for _ in range(2):
        result = authenticate(bearer(long_token), PROVIDERS, no_remote, NOW, cache)
        assert result.status is JwtStatus.JwtVerificationFail
    assert calls == [long_token, long_token]
    assert cache.rejected(long_token) is None
    keys = parse_jwks(JWKS)
    jwt = object()
    for number in range(MAX_REJECTED + 5):
        cache.put_rejected(f"t{number}", keys, jwt, JwtStatus.JwtVerificationFail)  # type: ignore[arg-type]
    assert cache.rejected("t4") is None and cache.rejected("t5") is not None
    assert cache.rejected(f"t{MAX_REJECTED + 4}") is not None


def test_outcomes_of_long_tokens_are_not_remembered() -> None:
    from extauthz.authn.extract import DEFAULT_LOCATIONS
    from extauthz.authn.outcomes import MAX_TOKENS_CHARS, AcceptedOutcomes
    from extauthz.authn.result import ALWAYS, AuthnResult

    outcomes = AcceptedOutcomes()
    result = AuthnResult(JwtStatus.Ok, principal="i/s", validity=ALWAYS)
    header, param = DEFAULT_LOCATIONS
    short = ((header, "a.b.c"), (param, "x" * 100))
    long = ((header, "a.b.c"), (param, "x" * MAX_TOKENS_CHARS))  # a valid token + junk
    for tokens in (short, long):
        outcomes.put(PROVIDERS, (tokens,), result)
    assert outcomes.get(PROVIDERS, (short,), NOW, no_remote) is result
    assert outcomes.get(PROVIDERS, (long,), NOW, no_remote) is None


def test_verified_tokens_are_kept_only_up_to_a_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A verified token is a cache key: long ones (an IdP may sign 64 KiB) are verified each
    time instead, so the cache is bounded in bytes as well as entries."""
    from extauthz.authn.cache import MAX_CACHED_TOKEN_CHARS

    calls = _counting_verify(monkeypatch)
    cache = TokenCache()
    long_token = KEY.sign(
        claims(iat=NOW, exp=NOW + 3600, padding="x" * MAX_CACHED_TOKEN_CHARS),
        headers={"kid": KEY.jwk["kid"]},
    )
    for _ in range(2):
        assert authenticate(bearer(long_token), PROVIDERS, no_remote, NOW, cache).is_ok
    assert calls == [long_token, long_token] and len(cache) == 0
    short_token = TOKENS["good"]
    for _ in range(2):
        assert authenticate(bearer(short_token), PROVIDERS, no_remote, NOW, cache).is_ok
    assert calls[2:] == [short_token] and len(cache) == 1
