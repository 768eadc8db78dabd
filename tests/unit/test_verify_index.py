"""The key set's index: a token is checked only against keys that could verify it, and the
answer is the one the plain loop over every key (jwt_verify_lib's) gives."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

from extauthz.authn.jwt import Jwt, parse_jwt
from extauthz.authn.keys import Jwk, KeySet, parse_jwks
from extauthz.authn.status import JwtStatus
from extauthz.authn.verify import verify_signature


@dataclass(frozen=True)
class Signer:
    name: str
    private: Any
    algs: tuple[str, ...]  # the algs it signs tokens with
    key_algs: tuple[str, ...]  # the algs its JWK may name (some no token uses)
    jwk: dict[str, Any]  # public parts only: no kid, no alg


def _rsa(name: str) -> Signer:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    return Signer(name, private, ("RS256", "RS384", "PS256"), ("RS256", "PS256", "RS512"), jwk)


def _ec(name: str, curve: ec.EllipticCurve, alg: str) -> Signer:
    private = ec.generate_private_key(curve)
    return Signer(
        name, private, (alg,), (alg,), json.loads(ECAlgorithm.to_jwk(private.public_key()))
    )


def _ed(name: str) -> Signer:
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    return Signer(name, private, ("EdDSA",), ("EdDSA",), jwk)


def _hmac(name: str, secret: bytes, algs: tuple[str, ...]) -> Signer:
    jwk = {"kty": "oct", "k": pyjwt.utils.base64url_encode(secret).decode()}
    return Signer(name, secret, algs, (*algs, "HS384"), jwk)


# A few keys, generated once and reused in every random key set.
SIGNERS = (
    _rsa("rsa-1"),
    _rsa("rsa-2"),
    _ec("p256-1", ec.SECP256R1(), "ES256"),
    _ec("p256-2", ec.SECP256R1(), "ES256"),
    _ec("p384", ec.SECP384R1(), "ES384"),
    _ed("ed25519"),
    _hmac("hs-32", b"a" * 32, ("HS256",)),
    _hmac("hs-64", b"b" * 64, ("HS256", "HS512")),
)
KIDS = ("", "a", "b", "c")
TOKEN_KIDS = ("", "a", "b", "unknown")


def reference_status(jwt: Jwt, keys: KeySet) -> JwtStatus:
    """Every key in turn, as verify.py did before the index (and jwt_verify_lib does)."""
    algorithm = {n: a for n, a in get_default_algorithms().items() if n != "none"}.get(jwt.alg)
    if algorithm is None:
        return JwtStatus.JwtHeaderNotImplementedAlg
    kid_alg_matched = False
    for jwk in keys.keys:
        if jwt.kid and jwk.kid and jwk.kid != jwt.kid:
            continue
        if jwk.alg and jwk.alg != jwt.alg:
            continue
        kid_alg_matched = True
        # Measured against Envoy 1.40: a fitting Ed25519 key stops the loop on a signature
        # that is not 64 bytes long, whatever the token's alg.
        if jwk.kty == "OKP" and len(jwt.signature) != 64:
            return JwtStatus.JwtEd25519SignatureWrongLength
        if not jwk.can_verify(jwt.alg):
            continue
        try:
            if algorithm.verify(jwt.signing_input, jwk.key, jwt.signature):
                return JwtStatus.Ok
        except Exception:
            pass
    return JwtStatus.JwtVerificationFail if kid_alg_matched else JwtStatus.JwksKidAlgMismatch


def _parsed(token: str) -> Jwt:
    parsed = parse_jwt(token)
    assert isinstance(parsed, Jwt), parsed
    return parsed


def _tokens() -> list[Jwt]:
    """Every signer x alg x kid, each valid, with a tampered signature, and (for EdDSA) with a
    signature of the wrong length."""
    tokens = []
    for signer in SIGNERS:
        for alg in signer.algs:
            for kid in TOKEN_KIDS:
                headers = {"kid": kid} if kid else {}
                token = pyjwt.encode({"sub": signer.name}, signer.private, alg, headers=headers)
                head, payload, signature = token.split(".")
                flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
                tokens += [_parsed(token), _parsed(f"{head}.{payload}.{flipped}")]
                if alg == "EdDSA":
                    tokens.append(_parsed(f"{head}.{payload}.AAAA"))
    return tokens


TOKENS = _tokens()


def _random_key_set(rng: random.Random) -> KeySet:
    entries = []
    for _ in range(rng.randint(1, 6)):
        signer = rng.choice(SIGNERS)
        entry = dict(signer.jwk)
        if kid := rng.choice(KIDS):
            entry["kid"] = kid
        if rng.random() < 0.5:
            entry["alg"] = rng.choice(signer.key_algs)
        entries.append(entry)
    keys = parse_jwks(json.dumps({"keys": entries}))
    if rng.random() < 0.1:
        # A key whose alg belongs to another type: parse_jwks never makes one, but the
        # index must not be fooled by it either (its kid and alg fit, its type cannot verify).
        odd = Jwk(rng.choice(KIDS), rng.choice(("RS256", "ES256", "HS256")), "oct", "", b"z" * 32)
        keys = KeySet((*keys.keys, odd))
    return keys


def test_indexed_verification_answers_as_the_loop_over_every_key() -> None:
    rng = random.Random(12)
    seen: set[JwtStatus] = set()
    fit_but_wrong_type = 0
    for _ in range(300):
        keys = _random_key_set(rng)
        for jwt in rng.sample(TOKENS, 12):
            expected = reference_status(jwt, keys)
            assert verify_signature(jwt, keys) is expected, (jwt.alg, jwt.kid, keys.keys)
            seen.add(expected)
            if expected is JwtStatus.JwtVerificationFail and not keys.candidates(jwt.alg, jwt.kid):
                fit_but_wrong_type += 1
    # The random cases reached every answer, including the subtle one: a key whose kid and
    # alg fit but whose type cannot verify makes a failed verification, not a mismatch.
    assert seen == {
        JwtStatus.Ok,
        JwtStatus.JwtVerificationFail,
        JwtStatus.JwksKidAlgMismatch,
        JwtStatus.JwtEd25519SignatureWrongLength,
    }
    assert fit_but_wrong_type > 0


# -- which keys a token is checked against ----------------------------------------------------

RSA_JWK, EC_JWK = SIGNERS[0].jwk, SIGNERS[2].jwk
OKP_JWK, HMAC_JWK = SIGNERS[5].jwk, SIGNERS[6].jwk


def _key_set(*entries: dict[str, Any]) -> KeySet:
    return parse_jwks(json.dumps({"keys": list(entries)}), max_keys=len(entries))


def _with(jwk: dict[str, Any], kid: str = "", alg: str = "") -> dict[str, Any]:
    return {**jwk, **({"kid": kid} if kid else {}), **({"alg": alg} if alg else {})}


HUNDRED_EC = [_with(EC_JWK, f"ec{i}") for i in range(100)]
HUNDRED_RSA = [_with(RSA_JWK, f"k{i}") for i in range(100)]


@pytest.mark.parametrize(
    ("keys", "alg", "kid", "expected"),
    [
        pytest.param(_key_set(*HUNDRED_EC, _with(RSA_JWK, "rsa")), "RS256", "", ["rsa"], id="rs256-no-kid-skips-100-ec-keys"),
        pytest.param(_key_set(*HUNDRED_EC, _with(RSA_JWK, "rsa")), "ES256", "ec7", ["ec7"], id="es256-kid-finds-its-one-key"),
        pytest.param(_key_set(*HUNDRED_RSA), "RS256", "k42", ["k42"], id="kid-among-100-rsa-keys"),
        pytest.param(_key_set(*HUNDRED_RSA, _with(RSA_JWK)), "RS256", "k42", ["k42", ""], id="kid-plus-keys-without-kid"),
        pytest.param(_key_set(*HUNDRED_RSA, _with(RSA_JWK)), "RS256", "unknown", [""], id="unknown-kid-only-keys-without-kid"),
        pytest.param(_key_set(*HUNDRED_RSA), "RS256", "unknown", [], id="unknown-kid-no-key"),
        pytest.param(_key_set(_with(RSA_JWK, "a", "RS512"), _with(RSA_JWK, "b", "RS256"), _with(RSA_JWK, "c")), "RS256", "", ["b", "c"], id="key-naming-another-alg-is-not-tried"),
        pytest.param(_key_set(_with(RSA_JWK, "a"), _with(EC_JWK, "a"), _with(HMAC_JWK, "a"), _with(OKP_JWK, "a")), "HS256", "a", ["a"], id="hs256-only-hmac-keys"),
        pytest.param(_key_set(_with(RSA_JWK, "a"), _with(EC_JWK, "b"), _with(HMAC_JWK, "c"), _with(OKP_JWK, "d")), "EdDSA", "", ["d"], id="eddsa-only-okp-keys"),
        pytest.param(_key_set(_with(RSA_JWK, "a"), _with(RSA_JWK, "b")), "PS256", "", ["a", "b"], id="ps256-rsa-keys-without-alg"),
    ],
)  # fmt: skip
def test_a_token_is_checked_only_against_keys_that_fit(
    keys: KeySet, alg: str, kid: str, expected: list[str]
) -> None:
    assert sorted(jwk.kid for jwk in keys.candidates(alg, kid)) == sorted(expected)


@pytest.mark.parametrize(
    ("keys", "alg", "kid", "matched"),
    [
        pytest.param(_key_set(_with(EC_JWK, "a")), "RS256", "", True, id="ec-key-without-alg-fits-rs256"),
        pytest.param(_key_set(_with(EC_JWK, "a", "ES256")), "RS256", "", False, id="ec-key-naming-es256-does-not"),
        pytest.param(_key_set(_with(EC_JWK, "a")), "RS256", "b", False, id="other-kid"),
        pytest.param(_key_set(_with(EC_JWK)), "RS256", "b", True, id="key-without-kid-fits-any-kid"),
        pytest.param(_key_set(_with(RSA_JWK, "a", "RS512"), _with(EC_JWK, "b")), "RS256", "a", False, id="kid-fits-alg-does-not"),
    ],
)  # fmt: skip
def test_which_key_sets_fit_a_tokens_kid_and_alg(
    keys: KeySet, alg: str, kid: str, matched: bool
) -> None:
    assert keys.has_kid_alg_match(alg, kid) is matched


def test_rs256_token_among_a_hundred_ec_keys_verifies_with_its_one_rsa_key() -> None:
    keys = _key_set(*HUNDRED_EC, RSA_JWK)
    token = pyjwt.encode({"sub": "alice"}, SIGNERS[0].private, "RS256")
    assert verify_signature(_parsed(token), keys) is JwtStatus.Ok
    other = pyjwt.encode({"sub": "alice"}, SIGNERS[1].private, "RS256")
    assert verify_signature(_parsed(other), keys) is JwtStatus.JwtVerificationFail
