"""Key sets that are too large, keys that should not be trusted, keys that never verify."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

from extauthz.authn.keys import DEFAULT_MAX_KEYS, JwksError, KeySet, TooManyKeysError, parse_jwks
from tests.support.tokens import ec_key, rsa_key

STRONG = rsa_key(kid="strong").jwk
EC = ec_key(kid="ec").jwk
_CA = ec.generate_private_key(ec.SECP256R1())


def _b64(data: bytes) -> str:
    return pyjwt.utils.base64url_encode(data).decode()


def _b64_int(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _rsa_with_modulus(n: int, kid: str) -> dict[str, Any]:
    """An RSA JWK with a made-up modulus: parsing never checks that n has two prime factors."""
    return {"kty": "RSA", "kid": kid, "n": _b64_int(n), "e": "AQAB"}


def _rsa_jwk(bits: int, kid: str) -> dict[str, Any]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return {**json.loads(RSAAlgorithm.to_jwk(private.public_key())), "kid": kid}


def _hmac(size: int, kid: str, alg: str = "") -> dict[str, Any]:
    jwk = {"kty": "oct", "kid": kid, "k": _b64(b"s" * size)}
    return {**jwk, "alg": alg} if alg else jwk


def _certificate_pem(public_key: Any) -> str:
    """A certificate for any public key, signed by a throwaway EC CA (so the subject's key
    need not be able to sign, or even be a real key)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public_key)
        .serial_number(1).not_valid_before(datetime.datetime(2020, 1, 1))
        .not_valid_after(datetime.datetime(2100, 1, 1)).sign(_CA, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _document(*keys: dict[str, Any]) -> str:
    return json.dumps({"keys": list(keys)})


# -- how many keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "max_keys", "count"),
    [
        pytest.param(_document(*[STRONG] * 101), DEFAULT_MAX_KEYS, 101, id="101-keys-default-limit"),
        pytest.param(_document(*[STRONG] * 5), 4, 5, id="5-keys-limit-4"),
        pytest.param(json.dumps({"keys": ["not a key"] * 101}), DEFAULT_MAX_KEYS, 101, id="counted-before-parsing"),
        pytest.param(json.dumps({f"kid{i}": "not a certificate" for i in range(3)}), 2, 3, id="x509-map-3-limit-2"),
    ],
)  # fmt: skip
def test_more_keys_than_the_limit_are_refused(document: str, max_keys: int, count: int) -> None:
    with pytest.raises(TooManyKeysError) as raised:
        parse_jwks(document, max_keys)
    message = str(raised.value)
    assert f"{count} keys" in message and f"limit of {max_keys}" in message
    assert "--max-jwks-keys" in message
    assert (raised.value.count, raised.value.limit) == (count, max_keys)
    assert isinstance(raised.value, JwksError)  # what config validation already catches


@pytest.mark.parametrize(
    ("document", "max_keys"),
    [
        pytest.param(_document(*[STRONG] * 100), DEFAULT_MAX_KEYS, id="100-keys-default-limit"),
        pytest.param(_document(*[STRONG] * 101), 101, id="101-keys-raised-limit"),
        pytest.param(json.dumps({"a": _certificate_pem(_CA.public_key()), "b": _certificate_pem(_CA.public_key())}), 2, id="x509-map-at-limit"),
    ],
)  # fmt: skip
def test_up_to_the_limit_is_accepted(document: str, max_keys: int) -> None:
    assert len(parse_jwks(document, max_keys)) == max_keys


# -- keys that work but should not be trusted -----------------------------------------------


@pytest.mark.parametrize(
    ("jwk", "weakness"),
    [
        pytest.param(_rsa_jwk(1024, "k"), "RSA modulus of 1024 bits is under 2048", id="rsa-1024"),
        pytest.param(_rsa_with_modulus((1 << 255) | 1, "k"), "RSA modulus of 256 bits is under 2048", id="rsa-256"),
        pytest.param(_hmac(1, "k", "HS256"), "HMAC secret of 1 byte is shorter than an HS256 hash (32 bytes)", id="hs256-1-byte"),
        pytest.param(_hmac(31, "k", "HS256"), "HMAC secret of 31 bytes is shorter than an HS256 hash (32 bytes)", id="hs256-31-bytes"),
        pytest.param(_hmac(32, "k", "HS384"), "HMAC secret of 32 bytes is shorter than an HS384 hash (48 bytes)", id="hs384-32-bytes"),
        pytest.param(_hmac(48, "k", "HS512"), "HMAC secret of 48 bytes is shorter than an HS512 hash (64 bytes)", id="hs512-48-bytes"),
        pytest.param(_hmac(16, "k"), "HMAC secret of 16 bytes is shorter than an HS256 hash (the key names no alg) (32 bytes)", id="hmac-no-alg-16-bytes"),
    ],
)  # fmt: skip
def test_weak_keys_are_kept_and_named(jwk: dict[str, Any], weakness: str) -> None:
    keys = parse_jwks(_document(jwk, STRONG))
    assert [k.kid for k in keys.keys] == ["k", "strong"]
    assert keys.keys[0].weakness == weakness
    assert keys.weak_keys == (f"kid 'k': {weakness}",)
    assert keys.skipped == ()


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param(STRONG, id="rsa-2048"),
        pytest.param(_rsa_with_modulus((1 << 16383) | 1, "k"), id="rsa-16384-bits"),
        pytest.param(_hmac(32, "k", "HS256"), id="hs256-32-bytes"),
        pytest.param(_hmac(48, "k", "HS384"), id="hs384-48-bytes"),
        pytest.param(_hmac(64, "k", "HS512"), id="hs512-64-bytes"),
        pytest.param(_hmac(32, "k"), id="hmac-no-alg-32-bytes"),
        pytest.param(EC, id="ec-p256"),
    ],
)  # fmt: skip
def test_keys_that_are_fine_have_no_weakness(jwk: dict[str, Any]) -> None:
    keys = parse_jwks(_document(jwk))
    assert keys.keys[0].weakness == "" and keys.weak_keys == ()


def test_a_weak_key_without_kid_is_named_by_its_type() -> None:
    keys = parse_jwks(_document({k: v for k, v in _hmac(8, "x").items() if k != "kid"}))
    assert keys.weak_keys == (
        "oct key without kid: HMAC secret of 8 bytes is shorter than an HS256 hash "
        "(the key names no alg) (32 bytes)",
    )


def test_weak_rsa_key_of_an_x509_certificate() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    keys = parse_jwks(json.dumps({"old": _certificate_pem(weak)}))
    assert keys.weak_keys == ("kid 'old': RSA modulus of 1024 bits is under 2048",)


# -- keys with which no signature can ever verify ---------------------------------------------

EVEN = "RSA modulus is even: no signature can verify with it"
HUGE = "RSA modulus of 16385 bits is over 16384, the most OpenSSL verifies: no signature can verify with it"


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        pytest.param(_rsa_with_modulus(1 << 2047, "k"), EVEN, id="rsa-even-modulus"),
        pytest.param(_rsa_with_modulus((1 << 16384) | 1, "k"), HUGE, id="rsa-16385-bits"),
        pytest.param({"kty": "oct", "kid": "k", "k": ""}, "[k] field of an HMAC key is empty", id="hmac-empty-k"),
        pytest.param({"kty": "oct", "kid": "k", "k": "!!"}, "Jwks Oct key is an invalid Base64", id="hmac-bad-base64"),
    ],
)  # fmt: skip
def test_keys_that_never_verify_are_skipped(jwk: dict[str, Any], reason: str) -> None:
    keys = parse_jwks(_document(jwk, STRONG))
    assert [k.kid for k in keys.keys] == ["strong"]
    assert keys.skipped == (f"keys[0]: {reason}",)
    with pytest.raises(
        JwksError, match=re.escape(f"Jwks doesn't have any valid public key (keys[0]: {reason})")
    ):
        parse_jwks(_document(jwk))


def test_x509_certificate_with_an_even_modulus_is_skipped() -> None:
    even = rsa.RSAPublicNumbers(65537, 1 << 2047).public_key()
    strong = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    document = json.dumps({"even": _certificate_pem(even), "good": _certificate_pem(strong)})
    keys = parse_jwks(document)
    assert [k.kid for k in keys.keys] == ["good"]
    assert keys.skipped == (f"kid 'even': {EVEN}",)


# -- strict mode: weak keys are dropped --------------------------------------------------------


def test_strict_keys_skips_weak_keys_and_keeps_the_others() -> None:
    document = _document(
        _hmac(1, "tiny", "HS256"), STRONG, _rsa_with_modulus((1 << 1023) | 1, "old")
    )
    keys = parse_jwks(document, strict_keys=True)
    assert [k.kid for k in keys.keys] == ["strong"]
    assert keys.weak_keys == ()
    assert keys.skipped == (
        "keys[0] (kid 'tiny'): HMAC secret of 1 byte is shorter than an HS256 hash (32 bytes) (--strict-keys)",
        "keys[2] (kid 'old'): RSA modulus of 1024 bits is under 2048 (--strict-keys)",
    )
    assert len(parse_jwks(document)) == 3  # without strict, all are kept


def test_strict_keys_with_only_weak_keys_is_an_error() -> None:
    with pytest.raises(
        JwksError, match=r"doesn't have any valid public key .*\(--strict-keys\)\)$"
    ):
        parse_jwks(_document(_hmac(1, "tiny", "HS256")), strict_keys=True)


def test_strict_keys_in_the_x509_form() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    document = json.dumps(
        {"old": _certificate_pem(weak), "new": _certificate_pem(_CA.public_key())}
    )
    keys = parse_jwks(document, strict_keys=True)
    assert [k.kid for k in keys.keys] == ["new"]
    assert keys.skipped == ("kid 'old': RSA modulus of 1024 bits is under 2048 (--strict-keys)",)


def test_key_sets_built_directly_are_indexed_too() -> None:
    keys = parse_jwks(_document(STRONG, EC))
    rebuilt = KeySet(keys.keys)
    assert rebuilt == KeySet(keys.keys)  # the index takes no part in equality
    assert rebuilt.candidates("ES256", "") == (keys.keys[1],)
