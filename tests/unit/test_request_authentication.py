"""Every JWTRule field, several rules merged as Istio merges them, and the hostile tokens."""

from __future__ import annotations

import base64
import json
from types import MappingProxyType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from extauthz.attributes import RequestAttributes
from extauthz.authn.authenticate import authenticate
from extauthz.authn.keys import JwksError, KeySet, parse_jwks
from extauthz.authn.status import JwtStatus
from extauthz.config.parse import ConfigError
from tests.support.config import request_authentication, snapshot_from
from tests.support.tokens import NOW, claims, ec_key, ed25519_key, hmac_key, jwks_of, rsa_key

A, B = "https://a.example", "https://b.example"
KEY_A, KEY_B = rsa_key(kid="a"), ec_key(kid="b")


def no_remote(uri: str, now: float) -> KeySet | None:
    return None


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _providers(*rules: str) -> object:
    text = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: ra, namespace: foo}\nspec:\n  jwtRules:\n"
    return snapshot_from(text + "".join(rules)).providers


def rule(issuer: str, jwks: str, extra: str = "") -> str:
    lines = f"  - issuer: {issuer}\n    jwks: '{jwks}'\n"
    return lines + "".join(f"    {line}\n" for line in extra.splitlines() if line)


TWO_RULES = _providers(rule(A, jwks_of(KEY_A)), rule(B, jwks_of(KEY_B)))


def attrs(
    headers: dict[str, str] | None = None, query: str = "", method: str = "GET"
) -> RequestAttributes:
    return RequestAttributes(method=method, headers=MappingProxyType(headers or {}), query=query)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


GOOD_A = KEY_A.sign(claims(iss=A, sub="alice"))
GOOD_B = KEY_B.sign(claims(iss=B, sub="bob"))
EXPIRED_A = KEY_A.sign(claims(iss=A, exp=NOW - 100))
UNKNOWN = KEY_A.sign(claims(iss="https://c.example"))


@pytest.mark.parametrize(
    ("request_", "status", "principal"),
    [
        pytest.param(attrs(), JwtStatus.Ok, "", id="no-token"),
        pytest.param(attrs(bearer(GOOD_A)), JwtStatus.Ok, f"{A}/alice", id="issuer-a"),
        pytest.param(attrs(bearer(GOOD_B)), JwtStatus.Ok, f"{B}/bob", id="issuer-b-same-location"),
        pytest.param(attrs(bearer(EXPIRED_A)), JwtStatus.JwtExpired, "", id="expired-a-reported-by-its-rule"),
        pytest.param(attrs(bearer(UNKNOWN)), JwtStatus.JwtUnknownIssuer, "", id="unknown-issuer"),
        # Both rules read both default locations. Measured against Envoy 1.40: rule B accepts
        # the query's token, which leaves the request; rule A then fails on it no more, and
        # in the AND rule A accepts the header's token and rule B finds nothing (missing).
        pytest.param(attrs(bearer(GOOD_A), f"access_token={GOOD_B}"), JwtStatus.Ok, f"{A}/alice", id="a-in-header-b-in-query"),
        pytest.param(attrs(bearer(GOOD_A), f"access_token={UNKNOWN}"), JwtStatus.JwtUnknownIssuer, "", id="a-in-header-unknown-in-query"),
    ],
)  # fmt: skip
def test_two_rules_merge_like_istio(
    request_: RequestAttributes, status: JwtStatus, principal: str
) -> None:
    result = authenticate(request_, TWO_RULES, no_remote, NOW)  # type: ignore[arg-type]
    assert (result.status, result.principal) == (status, principal)


def test_from_headers_with_prefix_and_params_and_cookies() -> None:
    providers = _providers(
        rule(
            A,
            jwks_of(KEY_A),
            "fromHeaders: [{name: X-Token, prefix: 'Token '}]\nfromParams: [jwt]\nfromCookies: [session]",
        )
    )
    for request_ in (
        attrs({"x-token": f"Token {GOOD_A}"}),
        attrs(query=f"jwt={GOOD_A}"),
        attrs({"cookie": f"theme=dark; session={GOOD_A}"}),
    ):
        result = authenticate(request_, providers, no_remote, NOW)  # type: ignore[arg-type]
        assert result.principal == f"{A}/alice"
    # The defaults no longer apply once a location is configured.
    default = authenticate(attrs(bearer(GOOD_A)), providers, no_remote, NOW)  # type: ignore[arg-type]
    assert default.is_ok and not default.has_identity


def test_header_without_prefix_takes_the_whole_value() -> None:
    providers = _providers(rule(A, jwks_of(KEY_A), "fromHeaders: [{name: x-jwt}]"))
    assert (
        authenticate(attrs({"x-jwt": GOOD_A}), providers, no_remote, NOW).principal == f"{A}/alice"
    )  # type: ignore[arg-type]
    assert (
        authenticate(attrs({"x-jwt": ""}), providers, no_remote, NOW).status
        is JwtStatus.JwtBadFormat
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        pytest.param("Basic dXNlcjpwYXNz", JwtStatus.Ok, id="other-scheme-is-no-token"),
        pytest.param("bearer " + GOOD_A, JwtStatus.Ok, id="prefix-is-case-sensitive"),
        pytest.param("Bearer ", JwtStatus.JwtBadFormat, id="prefix-without-token"),
        # Measured against Envoy 1.40: everything after the prefix is the token, and its
        # base64url decoding skips whitespace.
        pytest.param("Bearer  " + GOOD_A, JwtStatus.Ok, id="extra-space-skipped"),
        pytest.param(
            f"Bearer {GOOD_A}, extra",
            JwtStatus.JwtSignatureParseErrorBadBase64,
            id="trailing-junk-kept",
        ),
    ],
)
def test_bearer_extraction_like_envoy(authorization: str, status: JwtStatus) -> None:
    providers = _providers(rule(A, jwks_of(KEY_A)))
    result = authenticate(attrs({"authorization": authorization}), providers, no_remote, NOW)  # type: ignore[arg-type]
    assert result.status is status


def test_output_claims_and_payload_headers() -> None:
    providers = _providers(
        rule(
            A,
            jwks_of(KEY_A),
            "outputPayloadToHeader: X-Payload\noutputClaimToHeaders: [{header: x-sub, claim: sub}, {header: x-n, claim: n}, {header: x-deep, claim: a.b}, {header: x-list, claim: groups}]",
        )
    )
    token = KEY_A.sign(claims(iss=A, n=42, a={"b": "c"}, groups=["x", "y"]))
    result = authenticate(attrs(bearer(token)), providers, no_remote, NOW)  # type: ignore[arg-type]
    headers = dict(result.headers_to_set)
    assert headers["x-payload"] == token.split(".")[1]
    assert (headers["x-sub"], headers["x-n"], headers["x-deep"]) == ("alice", "42", "c")
    # A list is written as base64 of its compact JSON (measured against Envoy 1.40).
    assert headers["x-list"] == base64.b64encode(b'["x","y"]').decode()
    # Written over the client's own copy (never removed after being set).
    assert "x-list" not in result.headers_to_remove
    anonymous = authenticate(attrs({"x-sub": "root"}), providers, no_remote, NOW)  # type: ignore[arg-type]
    assert set(anonymous.headers_to_remove) == {"x-payload", "x-sub", "x-n", "x-deep", "x-list"}


def test_issuer_may_be_omitted_with_jwks_uri() -> None:
    text = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: ra, namespace: foo}\nspec:\n  jwtRules:\n  - jwksUri: http://127.0.0.1:1/keys\n"
    providers = snapshot_from(text).providers
    keys = parse_jwks(jwks_of(KEY_A))
    result = authenticate(attrs(bearer(UNKNOWN)), providers, lambda uri, now: keys, NOW)
    assert result.principal == "https://c.example/alice"


def test_cors_preflight_is_not_authenticated() -> None:
    providers = _providers(rule(A, jwks_of(KEY_A)))
    preflight = attrs(
        {**bearer("junk"), "origin": "https://x", "access-control-request-method": "GET"},
        method="OPTIONS",
    )
    assert authenticate(preflight, providers, no_remote, NOW).is_ok  # type: ignore[arg-type]
    assert (
        authenticate(attrs(bearer("junk"), method="OPTIONS"), providers, no_remote, NOW).status
        is JwtStatus.JwtBadFormat
    )  # type: ignore[arg-type]


HEADER = _b64({"alg": "RS256", "kid": "a"})


@pytest.mark.parametrize(
    ("token", "status"),
    [
        pytest.param(f"{_b64({'alg': 'RS256'})[:-2]}.{_b64(claims(iss=A))}.c2ln", JwtStatus.JwtHeaderParseErrorBadJson, id="truncated-header-json"),
        pytest.param(base64.urlsafe_b64encode(b'{"alg":"RS256","alg":"HS256"}').decode().rstrip("=") + "." + _b64(claims(iss=A)) + ".c2ln", JwtStatus.JwtHeaderParseErrorBadJson, id="duplicate-header-key"),
        pytest.param(HEADER + "." + base64.urlsafe_b64encode(b'{"iss":"x","iss":"' + A.encode() + b'"}').decode().rstrip("=") + ".c2ln", JwtStatus.JwtPayloadParseErrorBadJson, id="duplicate-payload-key"),
        pytest.param(HEADER + "." + base64.urlsafe_b64encode(b"\xff\xfe{}").decode().rstrip("=") + ".c2ln", JwtStatus.JwtPayloadParseErrorBadJson, id="payload-not-utf8"),
        pytest.param(HEADER + "." + _b64(claims(iss=A, name="Zoë 🚀")) + ".c2ln", JwtStatus.JwtVerificationFail, id="unicode-claims-parse-then-fail-signature"),
        pytest.param(HEADER + "." + base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=") + ".c2ln", JwtStatus.JwtPayloadParseErrorBadJson, id="deeply-nested-json"),
        pytest.param("a" * 70_000 + ".b.c", JwtStatus.JwtBadFormat, id="huge-token"),
        pytest.param(f"{HEADER} .{_b64(claims(iss=A))}.c2ln", JwtStatus.JwtVerificationFail, id="whitespace-is-skipped-by-base64url"),
    ],
)  # fmt: skip
def test_hostile_tokens_never_authenticate(token: str, status: JwtStatus) -> None:
    providers = _providers(rule(A, jwks_of(KEY_A)))
    assert authenticate(attrs(bearer(token)), providers, no_remote, NOW).status is status  # type: ignore[arg-type]


def test_crit_header_is_ignored_as_envoy_ignores_it() -> None:
    # Measured against Envoy 1.40: a well-signed token with `crit` is accepted.
    providers = _providers(rule(A, jwks_of(KEY_A)))
    token = KEY_A.sign(claims(iss=A), headers={"crit": ["exp"], "exp": 1})
    assert authenticate(attrs(bearer(token)), providers, no_remote, NOW).status is JwtStatus.Ok  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        pytest.param({"kty": "OKP", "crv": "Ed448", "x": "AAAA"}, "not supported for an OKP key", id="ed448"),
        pytest.param({**ec_key(alg="ES256").jwk, "alg": "ES384"}, "not compatible with [alg]", id="ec-alg-crv-mismatch"),
        pytest.param({**rsa_key().jwk, "alg": "ES256"}, "[RS] or [PS]", id="rsa-with-es-alg"),
        pytest.param({**rsa_key().jwk, "e": "Aw"}, None, id="rsa-e-3-accepted"),
        pytest.param({**rsa_key().jwk, "e": "BQ"}, "[n] or [e]", id="rsa-e-5-rejected"),
        pytest.param({**hmac_key().jwk, "alg": "RS256"}, "[HS]", id="oct-with-rs-alg"),
        pytest.param({"kty": "oct"}, "[k] field is missing", id="oct-without-k"),
        pytest.param({**ed25519_key().jwk, "x": "AAAA"}, "wrong length", id="okp-short-x"),
    ],
)  # fmt: skip
def test_jwks_key_rules(key: dict[str, object], message: str | None) -> None:
    document = json.dumps({"keys": [key]})
    if message is None:
        assert len(parse_jwks(document)) == 1
    else:
        with pytest.raises(JwksError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_jwks(document)


def test_jwks_ignores_use_and_skips_unusable_keys() -> None:
    keys = parse_jwks(
        json.dumps({"keys": [{**KEY_A.jwk, "use": "enc", "x5c": ["ignored"]}, {"kty": "XYZ"}]})
    )
    assert [k.kid for k in keys.keys] == ["a"]
    assert "not supported" in keys.skipped[0]


def test_x509_certificate_map_like_googles_endpoint() -> None:
    key = KEY_A.private
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    import datetime

    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(datetime.datetime(2020, 1, 1)).not_valid_after(datetime.datetime(2100, 1, 1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    keys = parse_jwks(json.dumps({"a": pem}))
    providers = snapshot_from(request_authentication(json.dumps({"a": pem}), A)).providers
    assert [(k.kid, k.kty) for k in keys.keys] == [("a", "RSA")]
    assert authenticate(attrs(bearer(GOOD_A)), providers, no_remote, NOW).principal == f"{A}/alice"


@pytest.mark.parametrize(
    ("rule_yaml", "message"),
    [
        pytest.param("  - jwks: '{}'\n", "issuer or jwksUri must be non-empty string", id="no-issuer-no-uri"),
        pytest.param("  - issuer: i\n    audiences: ['']\n", "must not be empty", id="empty-audience"),
        pytest.param("  - issuer: i\n    jwksUri: not-a-url\n", "is not an http(s) URL", id="bad-jwks-uri"),
        pytest.param("  - issuer: i\n    jwks: '{\"keys\": 1}'\n", "[keys] in Jwks is not an array", id="bad-jwks"),
        pytest.param("  - issuer: i\n    fromHeaders: [{prefix: 'Bearer '}]\n", "fromHeaders[0].name: is required", id="header-without-name"),
        pytest.param("  - issuer: i\n    fromParams: ['']\n", "must not be empty", id="empty-param"),
        pytest.param("  - issuer: i\n    outputClaimToHeaders: [{header: 'bad header', claim: sub}]\n", "is not a valid HTTP header name", id="bad-claim-header"),
        pytest.param("  - issuer: i\n    outputClaimToHeaders: [{header: x-sub}]\n", "claim: is required", id="claim-missing"),
        pytest.param("  - issuer: i\n    timeout: 5\n", "is not a duration", id="timeout-not-duration"),
        pytest.param("  - issuer: i\n    forwardOriginalToken: 'yes'\n", "must be true or false", id="forward-not-bool"),
        pytest.param("  - issuer: i\n    jwksUrl: http://x\n", "jwksUrl: unknown field", id="typo-field"),
    ],
)  # fmt: skip
def test_loader_rejects_what_istio_rejects(rule_yaml: str, message: str) -> None:
    text = (
        "apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata: {name: ra, namespace: foo}\nspec:\n  jwtRules:\n"
        + rule_yaml
    )
    with pytest.raises(ConfigError) as error:
        snapshot_from(text)
    assert str(error.value).startswith(
        "test.yaml (document 1): RequestAuthentication foo/ra: field spec.jwtRules[0]"
    )
    assert message in str(error.value)
