from __future__ import annotations

import json

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization

from extauthz.authn.jwt import Jwt, parse_jwt
from extauthz.authn.keys import JwksError, parse_jwks
from extauthz.authn.status import JwtStatus
from extauthz.authn.verify import verify_signature
from tests.support.tokens import (
    SigningKey,
    claims,
    ec_key,
    ed25519_key,
    hmac_key,
    jwks_of,
    rsa_key,
)


def _parsed(token: str) -> Jwt:
    parsed = parse_jwt(token)
    assert isinstance(parsed, Jwt), parsed
    return parsed


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(rsa_key(alg="RS256"), id="RS256"),
        pytest.param(rsa_key(alg="RS512"), id="RS512"),
        pytest.param(rsa_key(alg="PS256"), id="PS256"),
        pytest.param(ec_key(alg="ES256"), id="ES256"),
        pytest.param(ec_key(alg="ES384"), id="ES384"),
        pytest.param(ed25519_key(), id="EdDSA"),
        pytest.param(hmac_key(), id="HS256"),
    ],
)
def test_each_algorithm_verifies_and_rejects_tampering(key: SigningKey) -> None:
    keys = parse_jwks(jwks_of(key))
    token = key.sign(claims())
    assert verify_signature(_parsed(token), keys) is JwtStatus.Ok
    head, payload, _ = token.split(".")
    other = key.sign(claims(sub="mallory")).split(".")[2]
    assert (
        verify_signature(_parsed(f"{head}.{payload}.{other}"), keys)
        is JwtStatus.JwtVerificationFail
    )


def test_unknown_kid_is_kid_alg_mismatch() -> None:
    key = rsa_key(kid="a")
    keys = parse_jwks(jwks_of(key))
    token = key.sign(claims(), headers={"kid": "b"})
    assert verify_signature(_parsed(token), keys) is JwtStatus.JwksKidAlgMismatch


def test_key_alg_must_equal_token_alg() -> None:
    key = rsa_key()
    keys = parse_jwks(json.dumps({"keys": [{**key.jwk, "alg": "RS512"}]}))
    assert verify_signature(_parsed(key.sign(claims())), keys) is JwtStatus.JwksKidAlgMismatch


def test_token_without_kid_tries_every_key() -> None:
    first, second = rsa_key(kid="one"), rsa_key(kid="two")
    keys = parse_jwks(jwks_of(first, second))
    token = pyjwt.encode(claims(), second.private, algorithm="RS256")
    assert verify_signature(_parsed(token), keys) is JwtStatus.Ok


def test_algorithm_confusion_hs256_with_rsa_public_key_never_verifies() -> None:
    key = rsa_key(kid="k")
    keys = parse_jwks(jwks_of(key))
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # PyJWT refuses to HMAC with a PEM, so forge the HS256 signature by hand.
    import base64
    import hashlib
    import hmac

    def seg(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = f"{seg({'alg': 'HS256', 'kid': 'k'})}.{seg(claims())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert verify_signature(_parsed(forged), keys) is JwtStatus.JwtVerificationFail


def test_rs256_token_never_checked_against_an_hmac_key() -> None:
    secret_key = hmac_key(kid="k")
    keys = parse_jwks(
        json.dumps({"keys": [{k: v for k, v in secret_key.jwk.items() if k != "alg"}]})
    )
    rsa = rsa_key(kid="k")
    assert verify_signature(_parsed(rsa.sign(claims())), keys) is JwtStatus.JwtVerificationFail


def test_ed25519_signature_of_wrong_length() -> None:
    key = ed25519_key()
    keys = parse_jwks(jwks_of(key))
    head, payload, _ = key.sign(claims()).split(".")
    assert (
        verify_signature(_parsed(f"{head}.{payload}.AAAA"), keys)
        is JwtStatus.JwtEd25519SignatureWrongLength
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param("{", "Jwks is an invalid JSON", id="bad-json"),
        pytest.param("{}", "Jwks does not have [keys] field", id="no-keys"),
        pytest.param('{"keys": {}}', "[keys] in Jwks is not an array", id="keys-not-array"),
        pytest.param('{"keys": []}', "Jwks doesn't have any valid public key", id="empty"),
        pytest.param('{"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]}', "Jwks doesn't have any valid public key", id="bad-rsa"),
        pytest.param('{"keys": [{"kty": "XYZ"}]}', "not supported", id="unknown-kty"),
    ],
)  # fmt: skip
def test_bad_jwks_documents(document: str, message: str) -> None:
    with pytest.raises(JwksError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_jwks(document)


def test_istio_sample_jwks_parses() -> None:
    from extauthz.rig.rig import SAMPLES

    keys = parse_jwks((SAMPLES / "jwks.json").read_text())
    assert [(k.kty, k.kid) for k in keys.keys] == [
        ("RSA", "DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ")
    ]
